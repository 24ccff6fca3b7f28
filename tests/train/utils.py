"""Helpers of the training tests: tiny configs, running the CLI in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def smoke_config(data: Path, *overrides: str):
    """The `smoke` preset on `data` with extra ``key=value`` overrides."""
    from maxvit.train.config import apply_overrides, load_preset

    return apply_overrides(load_preset("smoke"), [f"data={data}", *overrides])


def subprocess_env() -> dict[str, str]:
    """Environment of child processes: this checkout's sources, one thread (see conftest)."""
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def maxvit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "maxvit", *args]


def run_maxvit(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m maxvit ARGS`` in a fresh process; fail the test on a non-zero exit."""
    proc = subprocess.run(
        maxvit_command(*args),
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"maxvit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    )
    return proc


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
