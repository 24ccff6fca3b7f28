"""Accuracy per minute: a budgeted recipe swept over wall-clock budgets, beside the recipe it
replaces run for growing numbers of epochs, on the same machine back to back.

`run_sweep` trains each point of a `Sweep` into ``out/runs/<label>/`` (an ordinary run folder),
times it from the call to `train` to its return (data set opening, model building, every
evaluation and checkpoint, the report), and keeps ``result.json`` beside it. It then writes, from
those files only::

    REPORT.md                 one row per run: recipe, setting, steps, epochs, wall time, val top-1
    accuracy_per_minute.png   val top-1 against wall-clock minutes, one line per recipe

A sweep run again reuses every finished point; a point that was interrupted is trained again
from its start (its wall time is what it measures).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from maxvit.errors import UserError
from maxvit.files import atomic_write, write_json, write_text


@dataclass(frozen=True)
class Sweep:
    """Budgets for a budgeted preset; epoch counts for the preset it is compared with."""

    preset: str  # the budgeted recipe, trained with ``--budget`` of each of `budgets`
    budgets: tuple[float, ...]  # minutes
    baseline: str  # the earlier recipe, trained for each of `baseline_epochs`
    baseline_epochs: tuple[int, ...]
    overrides: tuple[str, ...] = ()  # ``--set`` items applied to every run of the sweep


SWEEPS: dict[str, Sweep] = {
    # The CPU quick start against the cpu-mini recipe it replaces, on the 20,000 mini train
    # images: about an hour on a 2-core machine (longer budgets: `maxvit train --budget`).
    "cpu-budget": Sweep("cpu-budget", (2, 5, 10, 20), "cpu-mini", (1, 3)),
    # Seconds, for tests: the path on a tiny synthetic set.
    "smoke-budget": Sweep(
        "smoke", (0.1, 0.2), "smoke", (1,), ("steps_per_epoch=30", "ckpt_every_steps=0")
    ),
}


def run_sweep(name: str, data: str | Path, out: str | Path, overrides: list[str]) -> Path:
    """Train every point of sweep `name` on `data` into `out` (reusing finished ones), then
    write REPORT.md and the figure; returns REPORT.md."""
    from maxvit.train.config import apply_overrides, load_preset
    from maxvit.train.trainer import train

    sweep = SWEEPS[name]
    out = Path(out)
    points = [
        (f"{sweep.preset}-{minutes:g}m", sweep.preset, [f"budget_minutes={minutes}"])
        for minutes in sweep.budgets
    ] + [
        (f"{sweep.baseline}-{epochs}ep", sweep.baseline, [f"epochs={epochs}"])
        for epochs in sweep.baseline_epochs
    ]
    for label, preset, setting in points:
        folder = out / "runs" / label
        if (folder / "result.json").is_file():
            continue
        if folder.exists():
            print(f"{label}: an interrupted run; training it again from its start", flush=True)
            shutil.rmtree(folder)
        items = [*sweep.overrides, *overrides, *setting, f"data={data}"]
        config = apply_overrides(load_preset(preset), items)
        print(f"sweep {name}: {label}", flush=True)
        start = time.monotonic()
        train(config, folder)
        write_json(folder / "result.json", _result(folder, label, preset, time.monotonic() - start))
    return write_sweep_report(out)


def _result(folder: Path, label: str, preset: str, wall_s: float) -> dict:
    from maxvit.train.config import load_config
    from maxvit.train.report import read_metrics

    config = load_config(folder / "config.yaml")
    rows = read_metrics(folder)
    last = rows[-1]
    per_epoch = rows[0]["step"] if len(rows) > 1 else None  # the first epoch is a full one
    return {
        "label": label,
        "preset": preset,
        "budget_minutes": config.budget_minutes,
        "steps": last["step"],
        "epochs": last["step"] / per_epoch if per_epoch else None,
        "wall_s": wall_s,
        "val_top1": last["val_top1"],
        "val_top5": last["val_top5"],
        "val_images": last["val_images"],
        "tta": config.tta,
    }


def write_sweep_report(out: str | Path) -> Path:
    """REPORT.md and accuracy_per_minute.png from the ``result.json`` files under ``out/runs``."""
    out = Path(out)
    results = sorted(
        (json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")),
        key=lambda r: (r["preset"], r["wall_s"]),
    )
    if not results:
        raise UserError(f"{out} holds no finished sweep runs (runs/*/result.json)")
    lines = [
        "# Accuracy per minute",
        "",
        "Val top-1 of the last weights (flip TTA where the recipe evaluates with it) against the",
        "wall time of the whole run, from `train()` to its return. Written by `maxvit repro`",
        "from the `runs/*/result.json` files.",
        "",
        "| run | recipe | budget | steps | wall time | val top-1 | val top-5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        budget = f"{r['budget_minutes']:g} min" if r["budget_minutes"] else "-"
        lines.append(
            f"| {r['label']} | {r['preset']} | {budget} | {r['steps']:,} | "
            f"{r['wall_s'] / 60:.1f} min | {r['val_top1']:.2f}% | {r['val_top5']:.2f}% |"
        )
    _plot(results, out / "accuracy_per_minute.png")
    return write_text(out / "REPORT.md", "\n".join(lines) + "\n")


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, preset in enumerate(dict.fromkeys(r["preset"] for r in results)):
        mine = [r for r in results if r["preset"] == preset]
        ax.plot([r["wall_s"] / 60 for r in mine], [r["val_top1"] for r in mine], "o-",
                color=f"C{i}", label=preset)  # fmt: skip
    ax.set(xlabel="wall-clock minutes (whole run)", ylabel="val top-1 (%)",
           title="Accuracy per minute")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
