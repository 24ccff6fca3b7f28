"""How long a run trains and at which learning rate: the lr schedule and the time-budget planner.

A run without a budget trains ``epochs x steps_per_epoch`` optimizer steps (or ``total_steps``
when set). With a budget (``budget_minutes``, ``maxvit train --budget 10m``) the trainer times its
first steps and `plan_steps` fixes the step count so that the whole run, evaluations included,
ends within the budget; the schedule then decays to its end value exactly at that step
("Budgeted Training", Li et al., ICLR 2020: a schedule that ends at the budget beats a
truncated one). The count is written to the run's ``config.yaml`` as ``total_steps``, so a
resumed run and a second run from that file train exactly the same steps without timing again.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maxvit.errors import UserError

if TYPE_CHECKING:
    import torch

SHAPES = ("cosine", "linear")  # the lr decay after warmup

# Budget planning: steps run before the step time is read (allocator, caches, first-batch
# costs), then steps timed; the share of the budget kept free for what the estimate misses.
PLAN_WARMUP_STEPS = 5
PLAN_TIMED_STEPS = 20
PLAN_STEPS = PLAN_WARMUP_STEPS + PLAN_TIMED_STEPS
PLAN_MARGIN = 0.03
# An evaluation image costs about this fraction of a training image: a forward pass of the
# model in eval mode against forward, backward and the optimizer (`maxvit bench model`,
# maxvit_nano at 64 px, batch 64, CPU: 97 img/s training, 332 img/s inference on the fused copy,
# a ratio of 0.29; training evaluates the unfused model).
EVAL_COST_RATIO = 0.4
END_SECONDS = 5.0  # what a budget keeps for the run's end after the last evaluation (report)


def lr_factor(
    step: int, *, total: int, warmup: int, min_ratio: float, shape: str = "cosine"
) -> float:
    """LR multiplier at optimizer step `step`: linear warmup over `warmup` steps, then `shape`
    (cosine or linear) from 1 down to `min_ratio`, reached at step `total` and kept after it."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * t)) if shape == "cosine" else 1.0 - t
    return min_ratio + (1.0 - min_ratio) * decay


def parse_budget(text: str) -> float:
    """``90s``, ``10m``, ``2h``, ``1h30m`` or a bare number of minutes -> minutes (> 0)."""
    value = text.strip().lower()
    try:
        minutes = float(value)
    except ValueError:
        parts = re.fullmatch(
            r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", value
        )
        if not value or parts is None:
            raise UserError(
                f"cannot read the budget {text!r}; write it as 90s, 10m, 2h or 1h30m"
            ) from None
        hours, mins, secs = (float(g) if g else 0.0 for g in parts.groups())
        minutes = 60 * hours + mins + secs / 60
    if not minutes > 0 or not math.isfinite(minutes):
        raise UserError(f"the budget must be a positive time, got {text!r}")
    return minutes


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 580 -> '9m40s', 42.4 -> '42s'."""
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class Plan:
    """A budget turned into a step count (see `plan_steps`)."""

    total_steps: int  # optimizer steps of the whole run
    step_seconds: float  # measured time of one step (data wait included)
    eval_seconds: float  # estimated time of one evaluation
    evaluations: int  # evaluations still to come (each epoch end, the last one included)
    estimate_seconds: float  # the whole run as planned, from its start

    def describe(self, budget_minutes: float, batch_size: int, steps_per_epoch: int) -> str:
        epochs = self.total_steps / steps_per_epoch
        return (
            f"budget {format_duration(budget_minutes * 60)}: {self.total_steps:,} steps of "
            f"{batch_size} = {epochs:.1f} epochs, est. {format_duration(self.estimate_seconds)} "
            f"({self.step_seconds:.3f} s/step, {self.evaluations} evaluations of "
            f"~{format_duration(self.eval_seconds)})"
        )


def plan_steps(
    *,
    budget_s: float,
    elapsed_s: float,
    done_steps: int,
    step_s: float,
    steps_per_epoch: int,
    eval_s: float,
    end_s: float = 0.0,
    margin: float = PLAN_MARGIN,
) -> Plan:
    """The largest step count whose run fits the budget.

    `elapsed_s` have passed and `done_steps` steps are done (their evaluations included); each
    further step takes `step_s`; the run evaluates at the end of every epoch, the last one
    included when it is partial (`eval_s` each), then spends `end_s` on what follows the last evaluation (report,
    last checkpoint). ``budget_s x (1 - margin)`` must hold all of it. The count is at least
    `done_steps` (a budget too small for more ends the run there).
    """
    if step_s <= 0 or steps_per_epoch < 1:
        raise ValueError("step_s must be > 0 and steps_per_epoch >= 1")
    usable = budget_s * (1.0 - margin) - elapsed_s - end_s

    def cost(total: int) -> tuple[float, int]:
        evaluations = math.ceil(total / steps_per_epoch) - done_steps // steps_per_epoch
        return (total - done_steps) * step_s + evaluations * eval_s, evaluations

    # cost grows with the count: the largest count that fits, by bisection
    low, high = done_steps, done_steps + max(0, math.floor(usable / step_s))
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost(mid)[0] <= usable else (low, mid - 1)
    total = low
    spent, evaluations = cost(total)
    return Plan(
        total_steps=total,
        step_seconds=step_s,
        eval_seconds=eval_s,
        evaluations=evaluations,
        estimate_seconds=elapsed_s + spent + end_s,
    )


UNPLANNED = 10**12  # the step count of a budget run before its plan


class RunLength:
    """How many optimizer steps a run trains: ``total_steps``, epochs x steps per epoch, or, with a
    budget, what `plan_steps` makes of the first steps' timing (`after_step`).

    Only time in training steps is timed: evaluations and checkpoints run inside `paused`; the
    two timings drain `device`'s queue first (a host sync on a GPU, made twice per run).
    """

    def __init__(self, cfg, steps_per_epoch: int, started: float, device: torch.device) -> None:
        self.cfg = cfg  # a TrainConfig: budget_minutes, total_steps, epochs, batch_size, tta, ...
        self.steps_per_epoch = steps_per_epoch
        self.started = started  # the budget's clock: when `train` was called (time.monotonic)
        self.device = device
        fixed = cfg.total_steps or cfg.epochs * steps_per_epoch
        self.total: int | None = None if cfg.budget_minutes and not cfg.total_steps else fixed
        self.paused_s = 0.0
        self.timed_from: tuple[float, float] | None = None  # (wall time, paused_s) then

    @property
    def planned(self) -> bool:
        return self.total is not None

    @property
    def total_steps(self) -> int:
        """The run's step count; before a budget's plan, no end: the lr stays at its peak after
        the warmup (which covers the timed steps; only a run resumed before its plan sees this)."""
        return UNPLANNED if self.total is None else self.total

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def describe(self) -> str:
        """The run's length for its first line: "40 epochs", or "a 10 min budget" before its plan."""
        return (
            f"{self.epochs} epochs" if self.planned else f"a {self.cfg.budget_minutes:g} min budget"
        )

    def spent(self) -> str:
        """Wall time since `train` was called, with the budget where there is one."""
        spent = format_duration(time.monotonic() - self.started)
        budget = self.cfg.budget_minutes
        return f"{spent} (budget {format_duration(budget * 60)})" if budget else spent

    def fitted(self, progress) -> bool:
        """Whether the last epoch's clean-train top-1 reached ``stop_at_fit`` (`Progress`)."""
        return bool(self.cfg.stop_at_fit) and progress.fit_top1 >= self.cfg.stop_at_fit

    def fit_note(self, progress) -> str:
        """ ", fitted: clean-train top-1 X%" for a run that `fitted` stopped; "" otherwise."""
        fitted = self.fitted(progress)
        return f", fitted: clean-train top-1 {progress.fit_top1:.2f}%" if fitted else ""

    def already_complete(self, progress) -> str:
        """What resuming a `finished` run says: its length, best epoch and how to train on."""
        more = "stop_at_fit" if self.fitted(progress) else "epochs (--set epochs=N) or total_steps"
        return (
            f"is already complete ({progress.step} steps{self.fit_note(progress)}, best val "
            f"top-1 {progress.best_top1:.2f}% at epoch {progress.best_epoch}); nothing to train "
            f"(raise {more} to train on)"
        )

    def finished(self, progress) -> bool:
        """Whether the run is over: all its steps trained, or the train set fitted."""
        return progress.step >= self.total_steps or self.fitted(progress)

    def epoch_steps(self, epoch: int) -> int:
        """Steps of epoch `epoch` (0-based): all of them, but for a partial last epoch."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (evaluations, checkpoints) is not the steps' time."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.paused_s += time.monotonic() - start

    def now(self) -> float:
        """Wall time, after the device's queue has drained."""
        from maxvit.device import sync

        sync(self.device)
        return time.monotonic()

    def after_step(
        self, done_here: int, done_steps: int, val_images: Callable[[], int]
    ) -> Plan | None:
        """Call after each step (`done_here` steps done by this process, `done_steps` in all).
        Times the steps after the first `PLAN_WARMUP_STEPS`; after `PLAN_STEPS`, returns the
        budget's plan (its count still to be shared between ranks and set with `fix`);
        `val_images()` counts the images an evaluation scores."""
        if self.planned or done_here not in (PLAN_WARMUP_STEPS, PLAN_STEPS):
            return None
        if done_here == PLAN_WARMUP_STEPS:
            self.timed_from = (self.now(), self.paused_s)
            return None
        start, paused = self.timed_from
        step_s = (self.now() - start - (self.paused_s - paused)) / PLAN_TIMED_STEPS
        passes = 2 if self.cfg.tta == "flip" else 1
        return plan_steps(
            budget_s=self.cfg.budget_minutes * 60,
            elapsed_s=time.monotonic() - self.started,
            done_steps=done_steps,
            step_s=step_s,
            steps_per_epoch=self.steps_per_epoch,
            eval_s=val_images() * passes * step_s / self.cfg.batch_size * EVAL_COST_RATIO,
            end_s=END_SECONDS,
        )

    def fix(self, total: int) -> None:
        self.total = total
