"""Commands of the training area: train, eval, predict, export (report: maxvit.repro.cli)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

CHECKPOINT_HELP = "a run folder (its best checkpoint), a .safetensors or a .pt checkpoint"


def register(sub: argparse._SubParsersAction) -> None:
    from maxvit.train.presets import list_presets

    p = sub.add_parser(
        "train",
        help="train a model with a preset recipe (DDP under torchrun)",
        description="Train with a preset (YAML in maxvit/configs) and --set overrides. "
        "Run under `torchrun --nproc-per-node N -m maxvit train ...` for DDP.",
    )
    p.add_argument(
        "--preset",
        help=f"recipe: {', '.join(list_presets())}; or auto (what `make train` runs): seed "
        "on a GPU, else the CPU path: cpu-budget for 10 minutes on a mini subset of Tiny "
        "ImageNet made from --data or the download (default seed)",
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
        "--resume",
        nargs="?",
        const="yes",
        choices=("yes", "auto"),
        help="continue the run in --out from its last checkpoint (an error when there is none); "
        "--resume auto: continue it if there is one, else start it",
    )
    p.add_argument(
        "--budget",
        metavar="TIME",
        help="train for this wall-clock time, evaluations included (90s, 10m, 2h, 1h30m): the "
        "first steps are timed and the step count and lr schedule fixed to end within it "
        "(shortcut for --set budget_minutes=M)",
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
        "--tta",
        choices=("none", "flip"),
        default="none",
        help="test-time augmentation: flip = mean of the softmax of each image and its mirror",
    )
    _add_runtime_options(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("predict", help="top classes of image files")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_runtime_options(p)
    p.add_argument(
        "--data", help="data set whose train images calibrate --precision int8 (first use only)"
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export", help="export a checkpoint's model (ONNX, a timm model folder, AOTInductor)"
    )
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument(
        "--format",
        choices=("onnx", "timm", "pt2"),
        default="onnx",
        help="onnx (the dynamo exporter); timm: a folder that timm.create_model('local-dir:"
        "FOLDER', pretrained=True) loads (MaxViT variants); pt2: an AOTInductor package of the "
        "compiled CPU model, for torch._inductor.aoti_load_package",
    )
    p.add_argument(
        "--out",
        help="output file (onnx, pt2; default beside the weights, NAME.onnx / NAME.pt2) or "
        "folder (timm; default beside the weights, NAME-timm/)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="pt2 only: the package's precision (auto: bf16 on CPUs with bf16 units, else fp32)",
    )
    p.add_argument("--data", help="pt2 with --precision int8: data set to calibrate on")
    p.set_defaults(func=_export)


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """--runtime and --precision of the commands that run a checkpoint (maxvit.models.runtime)."""
    p.add_argument(
        "--runtime",
        choices=("auto", "eager", "compiled"),
        default="auto",
        help="eager (the fused inference copy) or compiled (inductor, frozen weights; minutes "
        "to compile on a CPU); auto: compiled for int8, else eager",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        default="auto",
        help="auto: bf16 on GPUs and on CPUs with bf16 units (AMX, AVX-512-BF16), fp16 on older "
        "GPUs, else fp32; int8: CPU, PT2E static quantization calibrated on 256 train images "
        "of --data, cached beside the checkpoint",
    )


def _train(args: argparse.Namespace) -> int:
    from maxvit.train.config import apply_overrides, load_config, load_preset
    from maxvit.train.trainer import train

    if args.preset == "auto":
        _choose_path(args)
    preset = args.preset or "seed"
    out = Path(args.out or f"runs/{preset}")
    for flag, path in (("--out", str(out)), ("--data", args.data)):
        _check_utf8(flag, path)
    resume = _resuming(args.resume, out)
    saved = load_config(out / "config.yaml") if resume else None
    overrides = list(args.overrides)
    if args.budget:
        from maxvit.train.schedule import parse_budget

        overrides.append(f"budget_minutes={parse_budget(args.budget)}")
    config = apply_overrides(saved or load_preset(preset), overrides)
    flags = {"model": args.model, "data": args.data}  # names as given, not read as YAML
    config = dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})
    config = dataclasses.replace(config, data=_absolute(config.data))
    if saved is not None:
        _check_same_run(saved, config, args.preset, out)
    if Path(config.data) == MINI.absolute() and not MINI.exists():  # the CPU presets' data
        _make_mini(None, download=args.download)
    train(config, out, resume=resume, download=args.download)
    return 0


def _check_utf8(flag: str, path: str | None) -> None:
    """A run folder's logs and config.yaml hold its paths as UTF-8 text: a path that is not
    (a file name in another encoding) is refused before anything is made."""
    from maxvit.errors import UserError

    try:
        (path or "").encode()
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode(errors="backslashreplace")
        raise UserError(f"{flag} {shown} is not UTF-8; rename it or choose another path") from None


def _resuming(mode: str | None, out: Path) -> bool:
    """Whether to resume the run in `out`: --resume needs one there, --resume auto takes it if
    there is one; without --resume a run there is refused later (nothing is overwritten)."""
    from maxvit.errors import UserError

    exists = (out / "checkpoints" / "last.pt").is_file()
    if mode == "yes" and not exists:
        raise UserError(
            f"{out} holds no run to resume (no checkpoints/last.pt); check --out, drop --resume "
            "to start a run there, or pass --resume auto"
        )
    if mode and exists and not (out / "config.yaml").is_file():
        raise UserError(f"{out} has a checkpoint but no config.yaml; it cannot be resumed")
    return bool(mode and exists)


def _check_same_run(saved, config, preset: str | None, out: Path) -> None:
    """A resumed run trains on as it began: another preset, model, input size or data set is
    refused, naming the setting (other fields, such as epochs, may change)."""
    from maxvit.errors import UserError

    if preset and saved.preset and preset != saved.preset:
        raise UserError(
            f"{out} was started with --preset {saved.preset}; it resumes with it, not {preset}"
        )
    for name in ("model", "img_size", "data"):
        was, now = getattr(saved, name), getattr(config, name)
        if name == "data":  # runs of earlier versions saved the path as given
            was = _absolute(was)
        if was != now:
            raise UserError(
                f"{out} was trained with {name} {was}; a resumed run keeps it (asked: {now}); "
                "start a new run in another --out instead"
            )


def _absolute(data: str) -> str:
    """A local data path made absolute (so a run resumes from any folder); shard patterns, URLs
    and pipe: commands as they are."""
    from maxvit.data.shards import is_shard_pattern

    return data if is_shard_pattern(data) else str(Path(data).expanduser().absolute())


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
        tta=args.tta,
        runtime=args.runtime,
    )
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from maxvit.errors import UserError
    from maxvit.train.predict import predict

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    results = predict(
        args.checkpoint,
        args.images,
        top_k=args.top_k,
        runtime=args.runtime,
        precision=args.precision,
        data=args.data,
    )
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:  # one line each on stderr; the good images are still answered
                print(f"error: {result['error']}", file=sys.stderr)
                continue
            print(result["image"])
            for entry in result["top"]:
                same = entry["id"] == entry["class"]
                print(
                    f"  {entry['probability']:.4f}  {entry['class']}"
                    + ("" if same else f" ({entry['id']})")
                )
    return 2 if failed else 0  # 2, as for every user error: some images were not classified


def _export(args: argparse.Namespace) -> int:
    from maxvit.train.export import export_onnx, export_pt2, export_timm

    if args.format == "pt2":
        print(export_pt2(args.checkpoint, args.out, precision=args.precision, data=args.data))
        return 0
    export = export_timm if args.format == "timm" else export_onnx
    print(export(args.checkpoint, args.out))
    return 0


MINI = Path("data/tiny-imagenet-200-mini.zip")  # the CPU path's subset (100 + 5 images a class)


def _choose_path(args: argparse.Namespace) -> None:
    """``--preset auto``: the recorded recipe where there is a GPU; on a CPU, the ten-minute path
    (the mini subset of --data, or of the official archive downloaded into data/, and the
    cpu-budget preset). Says which in one line."""
    import sys

    import torch

    if torch.cuda.is_available():
        print("a GPU is present: the recorded recipe (preset seed)", file=sys.stderr)
        args.preset = "seed"
        return
    print(
        f"no GPU: the CPU path, the cpu-budget recipe for 10 minutes on {MINI} (100 train and 5 "
        "val images per class of Tiny ImageNet), then the report; PRESET=seed runs the "
        "recorded GPU recipe instead",
        file=sys.stderr,
    )
    args.preset = "cpu-budget"
    if not MINI.exists():
        _make_mini(args.data, download=args.download)
    args.data, args.download = str(MINI), False


def _make_mini(source: str | None, *, download: bool) -> None:
    """Write `MINI`, the subset of the official archive `source` (default: the one in data/,
    downloaded there first when `download`)."""
    from maxvit.data.sources import download_into
    from maxvit.data.subset import make_subset
    from maxvit.errors import UserError

    if source is None and not download:
        raise UserError(
            f"{MINI} does not exist; make it from the official archive with `maxvit data subset "
            f"tiny-imagenet-200.zip --out {MINI}`, or pass --download to fetch the archive first"
        )
    make_subset(source or download_into(Path("data")), MINI)
