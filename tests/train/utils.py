"""Helpers of the training tests: tiny configs, running the CLI in a fresh process, faults
injected into the trainer (an interrupt at a step, a loss made non-finite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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


def interrupt_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The next training run raises KeyboardInterrupt as optimizer step `step` (1-based)
    begins, so the checkpoints of the steps before it are on disk. Undone after that run
    (a resumed run in the same test trains normally)."""
    from maxvit.train import trainer

    real = trainer._Run._train_step
    calls = {"n": 0}

    def train_step(self, batches):
        calls["n"] += 1
        if calls["n"] == step:
            monkeypatch.setattr(trainer._Run, "_train_step", real)
            raise KeyboardInterrupt
        return real(self, batches)

    monkeypatch.setattr(trainer._Run, "_train_step", train_step)


def scale_loss_at(monkeypatch: pytest.MonkeyPatch, factor: float, call: int) -> dict[str, int]:
    """Multiply the training loss by `factor` (inf, nan) at its `call`-th computation (one per
    micro-batch: the optimizer step of that number without accumulation). Returns the counter;
    set its "n" to 0 to count again for another run."""
    from maxvit.train import trainer

    real = trainer.soft_target_loss
    calls = {"n": 0}

    def loss(logits, targets):
        calls["n"] += 1
        value = real(logits, targets)
        return value * factor if calls["n"] == call else value

    monkeypatch.setattr(trainer, "soft_target_loss", loss)
    return calls
