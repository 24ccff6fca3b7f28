"""`maxvit summary`: the layer table of a model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="print a model's Keras-style layer table (output shapes, parameter counts)",
        description="Print a Keras-style layer table. BatchNorm running mean/variance are counted "
        "as non-trainable parameters, as Keras does, so maxvit_seed's totals compare with the "
        "recorded reproduction. Shapes are computed without memory (PyTorch's meta device), so "
        "any input size is quick.",
    )
    p.add_argument("--model", default="maxvit_seed", help="registered model name")
    p.add_argument("--img-size", type=int, default=None, help="input side (model default)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier outputs (default: Tiny ImageNet's 200; 0: no classifier)",
    )
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.set_defaults(func=_summary)
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=_list)


def _summary(args: argparse.Namespace) -> int:
    import torch

    from maxvit.models import create_model, default_img_size
    from maxvit.models.summary import format_csv, format_table, summarize
    from maxvit.models.variants import NUM_CLASSES

    size = default_img_size(args.model) if args.img_size is None else args.img_size
    classes = NUM_CLASSES if args.num_classes is None else args.num_classes
    with torch.device("meta"):  # shapes and counts only: no memory at any size
        model = create_model(args.model, num_classes=classes, img_size=size)
    rows = summarize(model, size)
    print(format_csv(rows) if args.format == "csv" else format_table(rows))
    return 0


def _list(args: argparse.Namespace) -> int:
    from maxvit.models import VARIANTS, default_img_size, list_models
    from maxvit.models.baselines import BASELINES

    for name in list_models():
        if name in VARIANTS:
            twin = VARIANTS[name].timm_name
            what = f"MaxViT, paper design (timm {twin})" if twin else "MaxViT, seed design"
        else:
            what = BASELINES[name].description
        print(f"{name}\t{default_img_size(name)}\t{what}")
    return 0
