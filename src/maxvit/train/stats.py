"""Where a run stands (`Progress`, saved in checkpoints) and the statistics a training step keeps
on the device (`DeviceStats`), so that it never waits for the host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import torch


@dataclass
class Progress:
    """Where the run stands; saved in every checkpoint (primitives only)."""

    epoch: int = 0  # current epoch, 0-based (== the epoch count when the run is complete)
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    step: int = 0  # optimizer steps done in total
    loss_sum: float = 0.0  # sum of per-sample train loss this epoch (all ranks)
    correct: float = 0.0  # correct augmented-stream predictions this epoch (all ranks)
    seen: float = 0.0  # samples trained on this epoch (all ranks)
    train_seconds: float = 0.0  # time spent in training steps this epoch
    data_seconds: float = 0.0  # of which waiting for the loader's next batch
    best_top1: float = -1.0  # best val top-1 so far (percent)
    best_epoch: int = 0  # epoch (1-based) of best_top1
    fit_top1: float = -1.0  # clean-train top-1 at the last epoch end (percent; -1: not measured)

    def end_epoch(self, val: dict[str, float], *, lr: float, eval_s: float) -> dict[str, Any]:
        """Close the epoch with its val result: returns its log row (``metrics.jsonl``),
        updates the best epoch and resets the counters for the next epoch."""
        row = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": self.loss_sum / max(self.seen, 1),
            "train_acc": 100 * self.correct / max(self.seen, 1),
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "val_loss": val["loss"],
            "val_images": val["n"],
            **(
                {"clean_train_top1": val["fit_top1"], "clean_train_images": val["fit_n"]}
                if "fit_top1" in val
                else {}
            ),
            "lr": lr,
            "images_per_s": self.seen / max(self.train_seconds, 1e-9),
            "data_wait_s": self.data_seconds,
            "epoch_time_s": self.train_seconds + eval_s,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.fit_top1 = val.get("fit_top1", -1.0)
        if val["top1"] > self.best_top1:
            self.best_top1, self.best_epoch = val["top1"], self.epoch + 1
        self.epoch += 1
        self.step_in_epoch = 0
        self.loss_sum = self.correct = self.seen = self.train_seconds = self.data_seconds = 0.0
        return row


class DeviceStats:
    """This rank's train statistics since the last sync, kept on the device.

    ``add`` is device work only (no host sync): loss and correct-prediction sums, and the first
    step whose loss was not finite. The sample count is known on the host. ``take`` returns
    them (with the stop flag) as one float64 device tensor to all-reduce, and starts over.
    Train accuracy is the argmax of the logits against the argmax of the (mixed, smoothed)
    target, as recorded.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * n, correct
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.seen = 0  # samples since the last take (known on the host)

    def add(
        self,
        loss: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        step: int,
        *,
        check: bool = True,
    ) -> None:
        """Count one micro-batch; with `check`, remember `step` if its loss is not finite (fp16
        leaves that to its loss scaler, which skips such steps)."""
        n = targets.shape[0]
        correct = (logits.detach().argmax(1) == targets.argmax(1)).sum()
        finite = torch.isfinite(loss.detach())
        loss_sum = torch.where(finite, loss.detach().double() * n, 0.0)  # a skipped step adds 0
        self.sums += torch.stack([loss_sum, correct.double()])
        if check:
            self.first_bad = torch.where((self.first_bad < 0) & ~finite, step, self.first_bad)
        self.seen += n

    def take(self, *, stop: bool) -> torch.Tensor:
        """[loss sum, correct, non-finite (0/1), seen, stop (0/1)] since the last take, as one
        float64 device tensor to all-reduce; then starts over (the first bad step is kept)."""
        host = torch.tensor([self.seen, float(stop)], dtype=torch.float64)
        bad = (self.first_bad >= 0).double().view(1)
        out = torch.cat([self.sums, bad, host.to(self.sums.device, non_blocking=True)])
        self.sums = torch.zeros_like(self.sums)
        self.seen = 0
        return out

    def bad_step(self) -> int | None:
        """This rank's first step with a non-finite loss (a host sync: read after one is seen)."""
        step = int(self.first_bad)
        return step if step >= 0 else None
