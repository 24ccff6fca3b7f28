"""A study's numbers, read back from its files only (so the report can be rebuilt any time)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from maxvit.errors import UserError
from maxvit.repro.plan import same_recipe


@dataclass
class ModelResult:
    """One model's numbers, all read from the study's files."""

    role: str  # MaxViT, ViT or CoAtNet
    name: str  # create_model name
    rows: list[dict]  # metrics.jsonl, one row per epoch
    params: int  # parameters (bench model)
    gflops_forward: float  # forward GFLOPs per image (bench model, corrected counter)
    gflops_train: float  # training-step GFLOPs per image (bench model)
    attention_share: float  # share of forward FLOPs in attention (bench model)
    s_per_batch: float  # training step seconds per batch, bench median
    spread: float  # (max - min) / median of the bench rounds
    gflop_per_s: float  # training-step GFLOP/s achieved in the bench
    run_s_per_batch: float  # seconds per batch during the run (median over epochs, incl. data)
    clean_train: dict  # evaluate() on the train split: top1, top5, loss, n

    @property
    def last(self) -> dict:
        return self.rows[-1]

    @property
    def fit_top1(self) -> float:
        """Clean train top-1 by the measure a plan's fit and ``stop_at_fit`` read: the last
        epoch's fixed train subset (``fit_images``) when the run logged one, else the split's."""
        return self.last.get("clean_train_top1", self.clean_train["top1"])

    @property
    def gap(self) -> float:
        """Clean train top-1 minus val top-1 of the final weights (points)."""
        return self.clean_train["top1"] - self.last["val_top1"]

    @property
    def gap_augmented(self) -> float:
        """Last-epoch train accuracy on the augmented stream minus val top-1 (as recorded)."""
        return self.last["train_acc"] - self.last["val_top1"]


@dataclass
class StudyResults:
    """Everything REPORT.md says, read from a study folder."""

    out: Path
    study: dict  # study.json
    recipe: dict  # the common config.yaml of the runs, without `model`
    models: list[ModelResult]  # in the plan's order of roles
    bench: dict  # bench/model.json
    scaling: dict | None  # bench/scaling/scaling.json (plans with a ViT only)

    def role(self, role: str) -> ModelResult | None:
        """The model playing `role`, or None where the plan has no such model (the ViT)."""
        return next((m for m in self.models if m.role == role), None)


def load_results(out: str | Path) -> StudyResults:
    """Read a study folder; a missing or inconsistent file is a `UserError` naming it."""
    import yaml

    from maxvit.train.report import read_metrics

    out = Path(out)
    if not (out / "study.json").is_file():
        raise UserError(f"{out} has no study.json (not a `maxvit repro` folder?)")
    study = read_json(out / "study.json")
    bench = read_json(out / "bench" / "model.json")
    scaling_json = out / "bench" / "scaling" / "scaling.json"
    scaling = read_json(scaling_json) if "ViT" in study["models"] else None
    by_name = {r["model"]: r for r in bench["results"]}
    models, recipes = [], []
    for role, name in study["models"].items():
        run = out / "runs" / name
        rows = read_metrics(run)
        if not rows:
            raise UserError(f"{run}/metrics.jsonl has no finished epoch")
        recipe = yaml.safe_load((run / "config.yaml").read_text())
        recipe.pop("model")
        recipes.append(recipe)
        b = by_name.get(name)
        if b is None:
            raise UserError(f"{out}/bench/model.json has no result for {name}")
        batch = recipe["batch_size"]
        models.append(
            ModelResult(
                role=role,
                name=name,
                rows=rows,
                params=b["params"],
                gflops_forward=b["gflops_forward_per_image"],
                gflops_train=b["gflops_train_per_image"],
                attention_share=b["attention_share_forward"],
                s_per_batch=b["train_s_per_batch"],
                spread=b["train_spread"],
                gflop_per_s=b["train_gflop_per_s"],
                run_s_per_batch=statistics.median(batch / r["images_per_s"] for r in rows),
                clean_train=read_json(run / "clean_train.json"),
            )
        )
    if any(not same_recipe(r, recipes[0]) for r in recipes):
        raise UserError(f"the runs in {out}/runs were trained with different recipes")
    return StudyResults(out, study, recipes[0], models, bench, scaling)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing (the study did not finish? run it again)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
