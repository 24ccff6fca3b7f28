"""The reproduction study: MaxViT, a 12-block ViT and CoAtNet trained alike, measured, reported.

`run_study` trains the three models of a preset's `StudyPlan` with one recipe (the preset and
the user's ``--set`` overrides; only ``model`` differs between the runs), then
measures each: clean train top-1 (the final weights on the unaugmented train split), val top-1
and top-5, the train-val gap, seconds per training batch, parameters and FLOPs (``maxvit bench
model``), and cost against resolution (``maxvit bench scaling``). It writes, under ``out``::

    study.json              preset, plan, recipe, data sizes, environment, wall time per phase
    runs/<model>/           the trainer's run folder (config.yaml, metrics.jsonl, checkpoints/)
    runs/<model>/clean_train.json   evaluate() of the last weights on the train split
    bench/model.json        `bench model` at the training batch size and resolution
    bench/scaling/          `bench scaling`: scaling.json and scaling.png
    REPORT.md, curves.png   written by `rebuild_report` from the files above only

Every number in REPORT.md comes from those files, so `rebuild_report` regenerates it at any
time (``maxvit repro --report-only --out DIR``). A study interrupted part-way continues where it
stopped when run again with the same arguments: finished runs and measurements are reused,
an unfinished run resumes from its last checkpoint.

The package, one job per file: `plan` (what a preset's study trains), this module (running it),
`results` (reading the files back), `claims` (the verdict rules, stated in the report next to
each verdict), `report` (REPORT.md and the curves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from maxvit.errors import UserError
from maxvit.files import write_json
from maxvit.repro.plan import EVAL_BATCH, StudyPlan, same_recipe, study_config
from maxvit.repro.report import rebuild_report
from maxvit.repro.results import read_json


def run_study(
    preset: str, data: str | Path, out: str | Path, overrides: list[str] | None = None
) -> Path:
    """Train and measure the models of `preset`'s plan in `out`; write REPORT.md; return it.

    `data` is an archive, unpacked or prepared folder (prepared on first use). Re-running with
    the same arguments reuses what is done; different arguments on the same `out` are refused.
    """
    from maxvit.data import open_data
    from maxvit.data.tiny_source import TinySource

    overrides = list(overrides or [])
    out = Path(out)
    plan, config = study_config(preset, data, overrides)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    source = open_data(config.data)
    if not isinstance(source, TinySource):
        raise UserError(f"the study runs on Tiny ImageNet; {source.describe()} is not")
    root = Path(source.location)
    config = dataclasses.replace(config, data=str(root.resolve()))
    study = _start_study(out, preset, plan, config, root, overrides)

    for name in plan.models:
        _train_one(out, study, dataclasses.replace(config, model=name))
    _bench(out, study, plan, config)
    study["finished"] = _now()
    study["environment"]["loadavg_end"] = _loadavg()
    write_json(out / "study.json", study, indent=2)
    return rebuild_report(out)


def _start_study(
    out: Path, preset: str, plan: StudyPlan, config: Any, root: Path, overrides: list[str]
) -> dict:
    """Write (or check and reuse) ``study.json``: what is studied, on what, where."""
    import torch
    import yaml

    from maxvit.data.prepare import read_prepared_manifest
    from maxvit.train.config import config_to_yaml

    recipe = yaml.safe_load(config_to_yaml(config))
    recipe.pop("model")
    path = out / "study.json"
    if path.exists():
        study = read_json(path)
        if study.get("preset") != preset or not same_recipe(study.get("recipe", {}), recipe):
            raise UserError(
                f"{out} holds a study of another preset or recipe (see {path}); choose another --out"
            )
        return study
    manifest = read_prepared_manifest(root)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    study = {
        "preset": preset,
        "overrides": overrides,
        "models": dict(zip(plan.roles, plan.models, strict=True)),
        "plan": dataclasses.asdict(plan),
        "recipe": recipe,
        "data": {
            "root": str(root),
            "classes": manifest["classes"],
            "train": manifest["splits"]["train"]["count"],
            "val": manifest["splits"]["val"]["count"],
        },
        "environment": {
            "device": device,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "loadavg_start": _loadavg(),
        },
        "started": _now(),
        "phases": {},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, study, indent=2)
    return study


def _train_one(out: Path, study: dict, config: Any) -> None:
    """Train one model (or resume / reuse its run), then its clean-train evaluation."""
    from maxvit.train.config import load_config
    from maxvit.train.evaluate import evaluate_checkpoint
    from maxvit.train.report import read_metrics
    from maxvit.train.trainer import train

    run = out / "runs" / config.model
    saved = run / "config.yaml"
    if saved.exists():  # a budget's run holds its planned step count: resume with that plan
        planned = load_config(saved)
        unplanned = dataclasses.replace(planned, total_steps=config.total_steps)
        if not same_recipe(dataclasses.asdict(unplanned), dataclasses.asdict(config)):
            raise UserError(
                f"{run} was trained with another recipe (see {saved}); choose another --out"
            )
        config = planned
    rows = read_metrics(run) if (run / "metrics.jsonl").exists() else []
    if not _trained(rows, config):
        _say(f"study: training {config.model} in {run}")
        with _phase(out, study, f"train {config.model}"):
            train(config, run, resume=True)
        rows = read_metrics(run)

    clean = run / "clean_train.json"
    if clean.exists() and read_json(clean).get("step") == rows[-1]["step"]:
        return
    _say(f"study: clean train accuracy of {config.model}")
    with _phase(out, study, f"eval {config.model}"):
        result = evaluate_checkpoint(
            run / "checkpoints" / "last.safetensors",
            config.data,
            "train",
            batch_size=max(config.batch_size, EVAL_BATCH),
            num_workers=config.num_workers,
        )
    write_json(
        clean, indent=2, data={**result, "step": rows[-1]["step"], "epoch": rows[-1]["epoch"]}
    )


def _bench(out: Path, study: dict, plan: StudyPlan, config: Any) -> None:
    """`bench model` at the training batch and size; `bench scaling` over the plan's sizes."""
    from maxvit.bench.model import ModelBenchConfig, run_benchmark
    from maxvit.bench.scaling import ScalingConfig, run_scaling
    from maxvit.models import default_img_size

    img_size = config.img_size or default_img_size(config.model)
    model_json = out / "bench" / "model.json"
    if not model_json.exists():
        _say("study: bench model")
        with _phase(out, study, "bench model"):
            run_benchmark(
                ModelBenchConfig(
                    models=list(plan.models),
                    batch_size=config.batch_size,
                    img_size=img_size,
                    rounds=plan.bench_rounds,
                    warmup=plan.bench_warmup,
                    memory=False,
                    json_path=model_json,
                )
            )
    scaling = out / "bench" / "scaling"
    if plan.scaling and not (scaling / "scaling.json").exists():
        _say("study: bench scaling")
        with _phase(out, study, "bench scaling"):
            run_scaling(
                ScalingConfig(
                    models=list(plan.models),
                    sizes=list(plan.scaling_sizes),
                    time=plan.scaling_time,
                    rounds=plan.scaling_rounds,
                    out=scaling,
                )
            )


def _trained(rows: list[dict], config: Any) -> bool:
    """Whether the run whose `metrics.jsonl` rows these are has ended: its steps all trained
    (planned by a budget or set), its epochs, or its train set fitted (``stop_at_fit``)."""
    if not rows:
        return False
    last = rows[-1]
    if config.stop_at_fit and last.get("clean_train_top1", -1.0) >= config.stop_at_fit:
        return True
    if config.total_steps:
        return last["step"] >= config.total_steps
    return last["epoch"] >= config.epochs and not config.budget_minutes


@contextlib.contextmanager
def _phase(out: Path, study: dict, name: str) -> Iterator[None]:
    """Time a phase and add it to ``study.json`` (written at once), also when it is interrupted:
    a phase resumed by a later invocation sums its parts.

    Wall seconds, and CPU seconds of this process and its finished children (data workers):
    on a machine shared with other jobs the wall time is inflated; the CPU time shows what the
    study itself used.
    """
    start, cpu = time.perf_counter(), _cpu_seconds()
    try:
        yield
    finally:
        done = study["phases"].get(name, {"wall_s": 0.0, "cpu_s": 0.0})
        study["phases"][name] = {
            "wall_s": done["wall_s"] + time.perf_counter() - start,
            "cpu_s": done["cpu_s"] + _cpu_seconds() - cpu,
        }
        write_json(out / "study.json", study, indent=2)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_name() -> str:
    import platform

    return platform.processor() or platform.machine()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
