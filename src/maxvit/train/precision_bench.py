"""`maxvit bench precision`: one trained checkpoint at each precision, on the CPU: its top-1 on
a split, how often its top-1 prediction agrees with the first precision's (fp32 by default),
and its time per batch.

`bench model` times random-weight models, which says nothing about accuracy. A lower precision
is worth its speed only if it keeps the predictions, so this benchmark puts both in one table
(docs/benchmarks.md, "Inference precision"). Every precision scores the same images (the
split's evaluation transform at the checkpoint's crop), one batch at a time, all precisions on
each batch. The timing then runs one fixed batch of those images: an untimed call per precision
first (it compiles), then `rounds` interleaved rounds whose order alternates; medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from maxvit.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder, .safetensors or .pt")
    parser.add_argument(
        "--data", required=True, help="data set to score on (and to calibrate int8 on)"
    )
    parser.add_argument(
        "--precisions", default="fp32,bf16,int8",
        help="comma-separated precisions, the first the one agreement is measured against "
        "(default fp32,bf16,int8)",
    )  # fmt: skip
    parser.add_argument(
        "--runtime", default="compiled", choices=("eager", "compiled"),
        help="compiled (inductor, frozen weights; the default) or eager (int8 runs compiled)",
    )  # fmt: skip
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--batch-size", type=int, default=8, help="timed batch (default 8)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")


def run(args: argparse.Namespace) -> int:
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or len(set(precisions)) != len(precisions):
        raise UserError(f"--precisions takes distinct names, got {args.precisions!r}")
    if args.batch_size < 1 or args.rounds < 1:
        raise UserError("--batch-size and --rounds must be >= 1")
    result = compare_precisions(
        args.checkpoint, args.data, precisions, runtime=args.runtime, split=args.split,
        batch_size=args.batch_size, rounds=args.rounds,
    )  # fmt: skip
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def compare_precisions(
    checkpoint: str | Path,
    data: str | Path,
    precisions: list[str],
    *,
    runtime: str = "compiled",
    split: str = "val",
    batch_size: int = 8,
    rounds: int = 15,
) -> dict[str, Any]:
    """Score and time the checkpoint at each of `precisions` (see the module docstring)."""
    import torch

    from maxvit.data import EvalTransform, build_eval_loader, open_data
    from maxvit.device import to_model_layout
    from maxvit.train.inference import load_for_inference

    cpu = torch.device("cpu")
    source = open_data(data)
    models, resolved = {}, {}
    for name in precisions:
        model, info, (how, precision) = load_for_inference(checkpoint, runtime, name, data=data)
        models[name], resolved[name] = to_model_layout(model, cpu), f"{how} {precision}"
    if list(source.class_names) != list(info.class_names):
        raise UserError(f"{info.path} was not trained on the classes of {source.describe()}")
    loader = build_eval_loader(
        source,
        split,
        batch_size=max(64, batch_size),
        num_workers=0,
        img_size=info.img_size,
        crop=info.eval_crop,
    )
    transform = EvalTransform(info.img_size, loader.device_crop)
    predictions: dict[str, list] = {name: [] for name in precisions}
    labels, timed = [], None
    with torch.no_grad():
        for images, batch_labels in loader:
            if not len(batch_labels):
                continue
            x = to_model_layout(transform(images), cpu)
            timed = x[:batch_size] if timed is None else timed
            labels.append(batch_labels)
            for name, model in models.items():
                predictions[name].append(model(x).argmax(1))
    if not labels or torch.cat(labels).min() < 0:
        raise UserError(f"the {split} split of {source.describe()} is empty or has no labels")
    truth = torch.cat(labels)
    first = torch.cat(predictions[precisions[0]])
    times = _interleaved_times(models, timed, rounds)
    rows = []
    for name in precisions:
        predicted = torch.cat(predictions[name])
        rows.append({
            "precision": name, "runs": resolved[name],
            "top1": 100 * (predicted == truth).double().mean().item(),
            "agreement": 100 * (predicted == first).double().mean().item(),
            "s_per_batch": statistics.median(times[name]),
            "s_rounds": times[name],
        })  # fmt: skip
    return {
        "checkpoint": str(info.path), "model": info.model, "split": split, "images": len(truth),
        "batch_size": len(timed), "img_size": info.img_size, "rounds": rounds,
        "threads": torch.get_num_threads(), "rows": rows,
    }  # fmt: skip


def _interleaved_times(models: dict, x: Any, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each model on `x`: one untimed call each, then `rounds` rounds,
    every other round in reverse order."""
    import torch

    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)
        for r in range(rounds):
            for name in list(models)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                models[name](x)
                times[name].append(time.perf_counter() - start)
    return times


def render(result: dict[str, Any]) -> str:
    """The table: one row per precision, speed relative to the first row."""
    base = result["rows"][0]
    lines = [
        f"{result['model']} ({result['checkpoint']}): {result['images']:,} {result['split']} "
        f"images; time: median of {result['rounds']} rounds of batch {result['batch_size']} at "
        f"{result['img_size']}px, {result['threads']} threads",
        "",
        f"| precision | runs as | {result['split']} top-1 % | agrees with {base['precision']} % "
        f"| s/batch | speed vs {base['precision']} |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['precision']} | {row['runs']} | {row['top1']:.2f} | {row['agreement']:.2f} "
            f"| {row['s_per_batch']:.4f} | {base['s_per_batch'] / row['s_per_batch']:.2f}x |"
        )
    return "\n".join(lines)
