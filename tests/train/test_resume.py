"""--resume after SIGKILL mid-epoch gives exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch

from maxvit.train import checkpoint as ckpt
from maxvit.train.trainer import train
from tests.train.utils import maxvit_command, read_weights, run_maxvit, smoke_config, subprocess_env

pytestmark = pytest.mark.slow  # two training subprocesses: about 25 s

# 2 epochs x 4 steps, a checkpoint every 2 steps: the first one (step 2) is mid-epoch.
STEPS = "steps_per_epoch=4"
ARGS = ("--preset", "smoke", "--set", STEPS)


def _kill_after_first_checkpoint(data, out, cwd) -> None:
    last = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        maxvit_command("train", *ARGS, "--data", str(data), "--out", str(out)),
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not last.exists():
            assert proc.poll() is None, (
                f"training ended before its first checkpoint:\n{proc.stderr.read()}"
            )
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(synth_data, tmp_path):
    # the uninterrupted run in this process (the CLI builds the same config; one thread each)
    reference = train(smoke_config(synth_data, STEPS), tmp_path / "reference")

    run = tmp_path / "killed"
    _kill_after_first_checkpoint(synth_data, run, tmp_path)
    progress = ckpt.load_state(run / "checkpoints" / "last.pt")["progress"]
    assert progress["epoch"] == 0 and progress["step_in_epoch"] == 2  # stopped mid-epoch

    proc = run_maxvit("train", "--resume", "--out", str(run), cwd=tmp_path)
    assert "resuming at epoch 1 step 2" in proc.stderr

    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
    # the running metrics were restored too: the logs agree (apart from timings)
    strip = ("images_per_s", "epoch_time_s", "data_wait_s", "time")

    def rows(path):
        lines = (path / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in strip} for line in lines]

    assert rows(run) == rows(reference)
