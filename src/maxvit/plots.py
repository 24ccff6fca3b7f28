"""The study figures: per-epoch loss and accuracy curves of one run or several side by side
(`plot_curves`), and val against clean-train accuracy (`plot_fit`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maxvit.files import atomic_write


@dataclass(frozen=True)
class Curves:
    """One run's curves: its ``metrics.jsonl`` rows, and optionally its clean train top-1."""

    label: str  # legend entry (several runs) or the title (one run)
    rows: list[dict]  # epoch, train_loss, val_loss, train_acc, val_top1, val_top5
    clean_train_top1: float | None = None  # a star at the last epoch, when measured


def plot_curves(runs: Sequence[Curves], path: str | Path, title: str = "") -> Path:
    """Loss (train, val) and accuracy (train, val top-1, val top-5, clean train) per epoch,
    one colour per run, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, run in enumerate(runs):
        color = f"C{i}"
        epochs = [r["epoch"] for r in run.rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in run.rows], "o-", color=color)
        ax_loss.plot(epochs, [r["val_loss"] for r in run.rows], "s--", color=color)
        ax_acc.plot(epochs, [r["train_acc"] for r in run.rows], "o-", color=color)
        ax_acc.plot(epochs, [r["val_top1"] for r in run.rows], "s--", color=color)
        ax_acc.plot(epochs, [r["val_top5"] for r in run.rows], "^:", color=color, alpha=0.6)
        if run.clean_train_top1 is not None:
            ax_acc.plot([epochs[-1]], [run.clean_train_top1], "*", color=color, markersize=12)
    styles = [
        Line2D([], [], color="grey", marker="o", label="train (augmented stream)"),
        Line2D([], [], color="grey", marker="s", ls="--", label="val (top-1)"),
        Line2D([], [], color="grey", marker="^", ls=":", label="val top-5"),
    ]
    if any(run.clean_train_top1 is not None for run in runs):
        styles.append(
            Line2D(
                [], [], color="grey", marker="*", ls="", markersize=10, label="clean train top-1"
            )
        )
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="%")
    if len(runs) > 1:
        models = [Line2D([], [], color=f"C{i}", label=run.label) for i, run in enumerate(runs)]
        ax_loss.legend(handles=models, fontsize=8)
    ax_acc.legend(handles=styles, fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title or (runs[0].label if len(runs) == 1 else ""), fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def plot_fit(
    curves: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    levels: Sequence[float],
    path: str | Path,
    title: str = "",
) -> Path:
    """Val top-1 against clean-train top-1, one curve per model (its epochs in order), with the
    diagonal (no gap) and the clean-train levels the models are compared at, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    top = max([train for _, points in curves for train, _ in points] + [1.0])
    ax.plot([0, top], [0, top], color="grey", lw=0.8, label="gap 0 (val = train)")
    for i, (label, points) in enumerate(curves):
        ax.plot([t for t, _ in points], [v for _, v in points], "o-", color=f"C{i}", label=label)
    for j, level in enumerate(levels):
        ax.axvline(level, color="black", ls=":", lw=0.8, label="matched levels" if j == 0 else None)
    ax.set(xlabel="clean-train top-1 (%), one point per epoch", ylabel="val top-1 (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
