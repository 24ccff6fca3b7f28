"""The accuracy-per-minute sweep: every point trained once, the report and figure from the
files, finished points reused."""

from __future__ import annotations

import json

import pytest

from maxvit.repro.budget import run_sweep, write_sweep_report
from maxvit.train.config import load_config
from maxvit.train.report import read_metrics


@pytest.mark.slow
def test_the_smoke_sweep_trains_each_point_once_and_reports(synthetic_archive, tmp_path):
    out = tmp_path / "sweep"
    report = run_sweep("smoke-budget", synthetic_archive, out, ["img_size=32"])
    labels = sorted(p.name for p in (out / "runs").iterdir())
    assert labels == ["smoke-0.1m", "smoke-0.2m", "smoke-1ep"]
    for label in ("smoke-0.1m", "smoke-0.2m"):
        run = out / "runs" / label
        result = json.loads((run / "result.json").read_text())
        # the plan was written and the run ended on it
        assert load_config(run / "config.yaml").total_steps == result["steps"]
        assert read_metrics(run)[-1]["step"] == result["steps"] >= 25
    baseline = json.loads((out / "runs" / "smoke-1ep" / "result.json").read_text())
    assert baseline["budget_minutes"] == 0 and baseline["epochs"] is None
    text = report.read_text()
    assert text.count("| smoke-") == 3 and (out / "accuracy_per_minute.png").stat().st_size > 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    run_sweep("smoke-budget", synthetic_archive, out, ["img_size=32"])  # nothing left to train
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert write_sweep_report(out).read_text() == text
