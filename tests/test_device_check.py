"""tools/device-check: the prepared GPU check, run on the CPU (--dry-run) so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "device-check"


@pytest.mark.slow
def test_device_check_dry_run_on_the_cpu(tmp_path):
    """tools/device-check --dry-run runs every step of the GPU check at tiny sizes on the CPU."""
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "device-check.json").read_text())
    assert [s["step"] for s in doc["steps"]] == [
        "cuda tests", "bench model (eager)", "training run"
    ]  # fmt: skip
    models = [r["model"] for r in doc["steps"][1]["results"]]
    assert models == ["maxvit_nano", "vit_nano"]
    assert doc["steps"][2]["steps"] == 4 and doc["steps"][2]["data_wait_s"] >= 0
    assert "| maxvit_nano | no |" in (out / "device-check.md").read_text()


def test_every_cuda_test_is_in_the_file_the_device_check_runs():
    tests = Path(__file__).resolve().parent
    mark = "pytest.mark." + "cuda"  # spelled apart, so that this file does not match
    marked = {p.relative_to(tests) for p in tests.rglob("test_*.py") if mark in p.read_text()}
    assert marked == {Path("train/test_cuda.py")}
