"""Claim 1 at matched fit: two models' train-val gaps compared at equal clean-train accuracy.

A gap measured at one epoch mixes how fast a model fits its train set with how much it
generalises at a given fit; the claim is about the second. So each model's fit curve (per epoch:
clean-train top-1 on a fixed train subset, and val top-1; `fit_curve`) is read at the same
clean-train levels (`matched_levels`): the highest level both reach, and `LOWER_LEVELS` levels
evenly spaced below it, down to the lowest level both curves cover. At a level, a curve's val
top-1 is interpolated linearly between the two epochs around the first time it reaches the level
(`val_at`). The standard error of a gap is binomial: the level measured on the train subset and
the interpolated val top-1 on the val images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOWER_LEVELS = 3  # levels below the highest common one


@dataclass(frozen=True)
class FitPoint:
    """One epoch of a fit curve (percent)."""

    train: float  # clean-train top-1 on the fixed train subset
    val: float  # val top-1


@dataclass(frozen=True)
class Gap:
    """A model's train-val gap at a clean-train level, with its binomial standard error."""

    level: float  # clean-train top-1 (percent)
    val: float  # val top-1 interpolated at that level
    se: float  # points

    @property
    def gap(self) -> float:
        return self.level - self.val


def fit_curve(rows: list[dict]) -> list[FitPoint]:
    """The fit curve of a run's metrics rows (those with a clean-train top-1)."""
    return [FitPoint(r["clean_train_top1"], r["val_top1"]) for r in rows if "clean_train_top1" in r]


def val_at(curve: list[FitPoint], level: float) -> float | None:
    """Val top-1 where `curve` first reaches clean-train top-1 `level`, linear between the epoch
    before and the epoch that reaches it; None when the curve never reaches it, or starts above
    it (no epoch before to interpolate from)."""
    for i, point in enumerate(curve):
        if point.train >= level:
            if point.train == level:
                return point.val
            if i == 0:
                return None
            before = curve[i - 1]
            w = (level - before.train) / (point.train - before.train)
            return before.val + w * (point.val - before.val)
    return None


def matched_levels(a: list[FitPoint], b: list[FitPoint]) -> list[float]:
    """The clean-train levels both curves are read at, highest first: the highest level both
    reach, then `LOWER_LEVELS` evenly spaced down to the lowest both cover (their first epochs).
    Empty when no level is common (one curve never reaches where the other starts)."""
    if not a or not b:
        return []
    top = min(max(p.train for p in a), max(p.train for p in b))
    low = max(a[0].train, b[0].train)
    if top < low:
        return []
    if top == low:
        return [top]
    step = (top - low) / LOWER_LEVELS
    return [top - k * step for k in range(LOWER_LEVELS)] + [low]  # low exactly: no rounding


def gap_at(curve: list[FitPoint], level: float, n_fit: int, n_val: int) -> Gap:
    """The gap of `curve` at `level` (which it must reach: a level of `matched_levels`)."""
    val = val_at(curve, level)
    if val is None:
        raise ValueError(f"the curve does not reach {level}")
    var = level * (100 - level) / max(n_fit, 1) + val * (100 - val) / max(n_val, 1)
    return Gap(level, val, math.sqrt(var))


def matched_gaps(
    a: list[FitPoint], b: list[FitPoint], n_fit: int, n_val: int
) -> list[tuple[Gap, Gap]]:
    """Both models' gaps at each of `matched_levels`, highest level first."""
    return [
        (gap_at(a, level, n_fit, n_val), gap_at(b, level, n_fit, n_val))
        for level in matched_levels(a, b)
    ]
