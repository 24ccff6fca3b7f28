"""What a training run tells its user: progress bar or plain lines, the epoch log
(``metrics.jsonl``), TensorBoard scalars, and the CPU run-time note. Rank 0 only.

TensorBoard gets the step loss and lr at every host sync of the statistics (every
``SYNC_EVERY`` optimizer steps, ``maxvit.train.trainer``) and every epoch row.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from maxvit.files import write_text

LOG_INTERVAL_S = 30.0  # plain progress lines (no terminal) at most this often
CPU_NOTE_AFTER_S = 3600.0  # the CPU note is printed when the rest of the run takes longer


def say(message: str) -> None:
    """One line for the user, on stderr (stdout stays free for results)."""
    print(message, file=sys.stderr, flush=True)


class RunLog:
    """The run's outputs to its user. On ranks other than 0 every method does nothing."""

    def __init__(self, out: Path, *, is_main: bool, resumed_at: int | None) -> None:
        """`resumed_at`: the step of the checkpoint a resumed run starts from (None: a new
        run). Epoch rows logged after it are dropped from ``metrics.jsonl``, and TensorBoard
        purges its events after that step."""
        self.out = out
        self.is_main = is_main
        self.last_line: float | None = None  # when the last plain progress line was printed
        self.bar: Any = None
        self.tb: Any = None
        if not is_main:
            return
        metrics = out / "metrics.jsonl"
        if resumed_at is not None and metrics.exists():
            from maxvit.train.report import read_metrics

            kept = [row for row in read_metrics(out) if row["step"] <= resumed_at]
            write_text(metrics, "".join(json.dumps(row) + "\n" for row in kept))
        elif resumed_at is None:
            metrics.unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resumed_at)

    def say(self, message: str) -> None:
        if self.is_main:
            say(message)

    def open_bar(self, label: str, total: int, done: int) -> None:
        """A progress bar over this epoch's steps (only on a terminal)."""
        if not (self.is_main and sys.stderr.isatty()):
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc=label, dynamic_ncols=True, leave=False)

    def step_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def progress(
        self,
        where: str,
        *,
        step: int,
        loss: float,
        acc: float,
        lr: float,
        rate: float,
        step_loss: float | None,
    ) -> None:
        """After a host sync: the running train loss and accuracy of the epoch (bar postfix, or
        a plain line every LOG_INTERVAL_S), and the step scalars for TensorBoard."""
        if not self.is_main:
            return
        if step_loss is not None:
            self.tb.add_scalar("train/loss_step", step_loss, step)
            self.tb.add_scalar("train/lr", lr, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}%")
        elif self.last_line is None or time.monotonic() - self.last_line > LOG_INTERVAL_S:
            self.last_line = time.monotonic()
            say(f"{where} loss {loss:.4f} acc {acc:.2f}% lr {lr:.3g} {rate:.1f} img/s")

    def epoch(self, row: dict[str, Any], label: str) -> None:
        """Append an epoch row to metrics.jsonl and TensorBoard, and print it."""
        if not self.is_main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if isinstance(value, int | float) and key not in ("epoch", "step"):
                self.tb.add_scalar(f"epoch/{key}", value, row["step"])
        self.tb.flush()
        say(
            f"{label}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}% | val top-1 "
            f"{row['val_top1']:.2f}% top-5 {row['val_top5']:.2f}% loss {row['val_loss']:.4f}"
            f" | {row['images_per_s']:.1f} img/s, {row['epoch_time_s']:.0f} s"
        )

    def cpu_note(self, batch_size: int, *, steps_left: int, step_s: float) -> None:
        """On a CPU, when the rest of an unbudgeted run takes long: say so, and what to run."""
        if not self.is_main or steps_left * step_s <= CPU_NOTE_AFTER_S:
            return
        say(
            f"note: training on the CPU at {batch_size / step_s:.1f} img/s, the remaining "
            f"{steps_left:,} steps "
            f"take about {steps_left * step_s / 3600:.1f} h; this recipe is meant for a GPU. On "
            "a CPU, `maxvit train --preset cpu-budget --budget 10m` trains the best model ten "
            "minutes buy (docs/training.md)"
        )

    def close(self) -> None:
        self.close_bar()
        if self.tb is not None:
            self.tb.close()
