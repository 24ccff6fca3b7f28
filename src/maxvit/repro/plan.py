"""What a study trains and measures: the models of each preset's plan, the common recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.errors import UserError

ROLES = ("MaxViT", "ViT", "CoAtNet")  # the parts a plan's models play (the ViT is optional)
NANO = ("maxvit_nano", "vit_nano", "coatnet_nano")  # CPU-sized, about 2.6 M parameters each
# The seed MaxViT (33.0 M) with the nearest-sized 12-block ViT (ViT-S/16, 22 M) and CoAtNet-0.
FULL = ("maxvit_seed", "vit_small_16", "coatnet_0")

# Config fields that do not change the numbers (the data order is a function of the seed):
# a study may be resumed with other values.
EXECUTION_ONLY = ("num_workers",)
EVAL_BATCH = 128  # smallest batch of the clean-train evaluation (fewer, larger forward passes)


@dataclass(frozen=True)
class StudyPlan:
    """What a preset's study trains and measures, besides the preset's own recipe."""

    models: tuple[str, ...]  # create_model names, one per role of `roles`
    roles: tuple[str, ...] = ROLES  # MaxViT and CoAtNet always; the 12-block ViT optional
    fit: float | None = None  # clean train top-1 (percent) every model should reach, if any
    bench_rounds: int = 5  # recorded rounds of `bench model` (one train step per model each)
    bench_warmup: int = 1  # unrecorded rounds of `bench model` first
    scaling_sizes: tuple[int, ...] = (224, 448, 672)  # input sides of `bench scaling`
    scaling_rounds: int = 2  # timed inference batches per model and size in `bench scaling`
    scaling_time: bool = True  # time inference in `bench scaling` (False: FLOPs only)

    def __post_init__(self) -> None:
        if len(self.models) != len(self.roles) or not {"MaxViT", "CoAtNet"} <= set(self.roles):
            raise ValueError("a plan names one model per role, MaxViT and CoAtNet among them")

    @property
    def scaling(self) -> bool:
        """`bench scaling` compares MaxViT with the ViT: only plans with a ViT run it."""
        return "ViT" in self.roles


PLANS: dict[str, StudyPlan] = {
    # The cpu-mini recipe unchanged (3 epochs of the 20,000 mini train images, batch 64): the
    # whole study took 23.4 min on a nearly idle 2-core machine (training 6.4, 8.0 and 7.1 min,
    # clean-train evaluations 1.7 min, benchmarks 0.3 min).
    "cpu-mini": StudyPlan(NANO, scaling_sizes=(128, 256, 512)),
    # Claim 1 judged where it can be: MaxViT and CoAtNet (the ViT is not in that claim)
    # trained alike until both fit the mini train set (clean train top-1 >= 60%).
    "cpu-fit": StudyPlan((NANO[0], NANO[2]), roles=("MaxViT", "CoAtNet"), fit=60.0),
    # The same with the recorded four-pass augmentation (hours on a CPU: see its preset).
    "cpu-fit-aug": StudyPlan((NANO[0], NANO[2]), roles=("MaxViT", "CoAtNet"), fit=60.0),
    # Seconds: the whole path on a tiny synthetic set (tests).
    "smoke": StudyPlan(
        NANO, bench_rounds=1, bench_warmup=0, scaling_sizes=(32, 64), scaling_time=False
    ),
    # Full scale on a GPU: the recorded recipe and data, as recorded.
    "seed": StudyPlan(FULL, bench_warmup=2),
    "paper": StudyPlan(FULL, bench_warmup=2),
}


def study_config(preset: str, data: str | Path, overrides: list[str]) -> tuple[StudyPlan, Any]:
    """The plan and the common `TrainConfig` (``model`` is set per run) of a study."""
    from maxvit.train.config import apply_overrides, load_preset

    config = load_preset(preset)
    if preset not in PLANS:
        raise UserError(f"preset {preset!r} has no study plan; valid: {', '.join(PLANS)}")
    for item in overrides:
        if item.partition("=")[0].strip() == "model":
            raise UserError("the study trains its own models; --set model is not allowed")
    plan = PLANS[preset]
    config = apply_overrides(config, [*overrides, f"data={data}"])
    return plan, config


def same_recipe(a: dict, b: dict) -> bool:
    """Equal configs apart from fields that change how a run executes, not what it computes.

    A field one side lacks (a study started before the field existed) counts as its
    `TrainConfig` default, the value that reproduces what the code did before it was added.
    """
    import dataclasses

    from maxvit.train.config import TrainConfig

    missing = dataclasses.MISSING
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key in (set(a) | set(b)) - set(EXECUTION_ONLY):
        x, y = a.get(key, defaults.get(key, missing)), b.get(key, defaults.get(key, missing))
        if x is missing or y is missing or x != y:
            return False
    return True
