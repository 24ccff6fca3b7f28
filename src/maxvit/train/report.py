"""Run report: loss and accuracy curves (PNG) and a markdown summary from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from maxvit.errors import UserError
from maxvit.files import write_text
from maxvit.plots import Curves, plot_curves
from maxvit.recorded import RECORDED


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch rows of a run folder's ``metrics.jsonl``.

    A last line cut short (the process died while appending it) is left out: that epoch is
    not complete in the log. A bad line before the last is a `UserError` naming it.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl (not a training run folder?)")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # cut short mid-write
            raise UserError(f"{path} line {number} is not JSON; the log is damaged") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise UserError(f"{path} line {number} is not an epoch record")
        rows.append(row)
    return rows


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``curves.png`` and ``summary.md`` into the run folder; return their paths."""
    run = Path(run_dir)
    rows = read_metrics(run)
    if not rows:
        raise UserError(f"{run}/metrics.jsonl has no finished epoch yet")
    png = run / "curves.png"
    md = run / "summary.md"
    plot_curves([Curves(f"run {run.name}", rows)], png)
    write_text(md, _summary(run, rows))
    return png, md


def _summary(run: Path, rows: list[dict]) -> str:
    config_path = run / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    last = rows[-1]
    best = max(rows, key=lambda r: r["val_top1"])
    hours = sum(r["epoch_time_s"] for r in rows) / 3600
    epochs = config.get("epochs", "?")
    lines = [
        f"# Training run `{run.name}`",
        "",
        f"Model `{config.get('model', '?')}` at {config.get('img_size') or 'default'} px, "
        f"{last['epoch']} of {epochs} epochs, {last['step']} steps, "
        f"{hours:.2f} h of training and validation.",
        "",
        "| | value |",
        "|---|---|",
        f"| best val top-1 | {best['val_top1']:.2f}% (epoch {best['epoch']}) |",
        f"| last val top-1 / top-5 | {last['val_top1']:.2f}% / {last['val_top5']:.2f}% |",
        f"| last train accuracy (augmented stream) | {last['train_acc']:.2f}% |",
        f"| gap train (augmented) - val | {last['train_acc'] - last['val_top1']:.2f} points |",
        f"| train loss, first -> last epoch | {rows[0]['train_loss']:.2f} -> {last['train_loss']:.2f} |",
        f"| throughput (last epoch) | {last['images_per_s']:.1f} img/s |",
        "",
        f"Recorded Keras run (maxvit_seed, {RECORDED['epochs']} epochs): val top-1 "
        f"{RECORDED['val_top1']}%, train accuracy {RECORDED['train_acc']}% (augmented stream), "
        f"train loss {RECORDED['train_loss'][0]} -> {RECORDED['train_loss'][1]}.",
        "",
        "The train accuracy above is measured on the augmented stream, as recorded. For the clean",
        f"train accuracy run `maxvit eval --checkpoint {run} --data DATA --split train`.",
        "",
        "![curves](curves.png)",
        "",
        "| epoch | train loss | train acc | val loss | val top-1 | val top-5 | lr | img/s | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['epoch']} | {r['train_loss']:.4f} | {r['train_acc']:.2f} | {r['val_loss']:.4f} "
            f"| {r['val_top1']:.2f} | {r['val_top5']:.2f} | {r['lr']:.3g} | "
            f"{r['images_per_s']:.1f} | {r['epoch_time_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"
