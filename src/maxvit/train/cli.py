"""Commands of the training area: train, eval, predict, export (report: maxvit.repro.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CHECKPOINT_HELP = "a run folder (its best checkpoint), a .safetensors or a .pt checkpoint"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with a preset recipe (DDP under torchrun)",
        description="Train with a preset (YAML in maxvit/configs) and --set overrides. "
        "Run under `torchrun --nproc-per-node N -m maxvit train ...` for DDP.",
    )
    p.add_argument(
        "--preset",
        default="seed",
        help="recipe: seed, paper, finetune, imagenet, cpu-mini, smoke (default seed)",
    )
    p.add_argument(
        "--data",
        help="data set: Tiny ImageNet (zip, unpacked or prepared folder; an archive is prepared "
        "on first use beside it, or under ~/.cache/maxvit when its folder is read-only), class "
        "folders (ROOT/train/<class>/...), or WebDataset shards (folder, brace pattern, URL, "
        "pipe:); default ./data",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download Tiny ImageNet into --data's folder when it holds no data set",
    )
    p.add_argument("--model", help="model name (shortcut for --set model=NAME)")
    p.add_argument("--out", help="run folder (default runs/PRESET)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set epochs=10 --set aug.mixup_alpha=0.0 (repeatable)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1, top-5, loss as JSON")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument(
        "--data", required=True, help="data set (any layout `maxvit train --data` accepts)"
    )
    p.add_argument(
        "--split",
        choices=("val", "train"),
        default="val",
        help="val, or train for the clean (unaugmented) train accuracy",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="loader processes (default 0; full-size images decode faster with a few)",
    )
    p.add_argument(
        "--crop",
        type=float,
        default=None,
        help="centre-crop fraction (default: the checkpoint's eval_crop; 1.0 = no crop)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "fp32"),
        default="auto",
        help="auto: bf16 on GPUs that have it, fp16 on older ones, fp32 on the CPU",
    )
    p.set_defaults(func=_eval)

    p = sub.add_parser("predict", help="top classes of image files")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="export a checkpoint's model (ONNX)")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="output file (default: beside the weights, NAME.onnx)")
    p.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from maxvit.train.config import apply_overrides, load_config, load_preset
    from maxvit.train.trainer import train

    out = Path(args.out or f"runs/{args.preset}")
    saved = out / "config.yaml"
    if args.resume and saved.exists():
        config = load_config(saved)  # the run's own recipe; --set/--data/--model still apply
    else:
        config = load_preset(args.preset)
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model={args.model}")
    if args.data:
        overrides.append(f"data={args.data}")
    config = apply_overrides(config, overrides)
    train(config, out, resume=args.resume, download=args.download)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from maxvit.errors import UserError
    from maxvit.train.evaluate import evaluate_checkpoint

    if args.num_workers < 0 or args.batch_size < 1:
        raise UserError("--num-workers must be >= 0 and --batch-size >= 1")
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        crop=args.crop,
        precision=args.precision,
    )
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from maxvit.errors import UserError
    from maxvit.train.predict import predict

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    results = predict(args.checkpoint, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for entry in result["top"]:
            same = entry["id"] == entry["class"]
            print(
                f"  {entry['probability']:.4f}  {entry['class']}"
                + ("" if same else f" ({entry['id']})")
            )
    return 0


def _export(args: argparse.Namespace) -> int:
    from maxvit.train.export import export_onnx

    print(export_onnx(args.checkpoint, args.out))
    return 0
