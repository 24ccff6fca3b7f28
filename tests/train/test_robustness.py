"""Interrupts, pre-emption and hostile input: nothing lost, one clear line every time.

Each test is one row of docs/robustness.md.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import safetensors.torch
import torch

from maxvit.cli import main
from maxvit.train import checkpoint as ckpt
from maxvit.train import trainer
from maxvit.train.config import save_config
from maxvit.train.trainer import train
from tests.train.utils import maxvit_command, read_weights, run_maxvit, smoke_config, subprocess_env

pytestmark = pytest.mark.slow  # end to end: training runs, subprocesses and real signals
ONE_STEP = ("epochs=1", "steps_per_epoch=1")


@pytest.fixture(scope="module")
def tiny_run(synth_data, tmp_path_factory) -> Path:
    return train(smoke_config(synth_data, *ONE_STEP), tmp_path_factory.mktemp("r") / "run")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# -------------------------------------------------------------------------------------------
# Checkpoints written in an order that cannot disagree


def test_an_interrupt_between_checkpoint_files_cannot_leave_a_stale_best(
    synth_data, tmp_path, monkeypatch
):
    config = smoke_config(synth_data, "ckpt_every_steps=0")
    reference = train(config, tmp_path / "reference")
    real = ckpt.save_weights
    calls = {"n": 0}

    def first_file_then_interrupt(path, state_dict, metadata):
        real(path, state_dict, metadata)
        calls["n"] += 1
        if calls["n"] == 3:  # the first file of epoch 2's end-of-epoch save
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_weights", first_file_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run")
    monkeypatch.undo()
    run = train(config, tmp_path / "run", resume=True)
    state = ckpt.load_state(run / "checkpoints" / "last.pt")
    _, best = ckpt.read_weights(run / "checkpoints" / "best.safetensors")
    assert best.epoch == state["progress"]["best_epoch"]  # the summary's best is the file's
    assert f"(epoch {best.epoch})" in (run / "summary.md").read_text()
    final, expected = (
        read_weights(r / "checkpoints" / "best.safetensors") for r in (run, reference)
    )
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_a_temporary_left_by_a_killed_write_is_removed_on_resume(synth_data, tmp_path, capsys):
    run = train(smoke_config(synth_data, *ONE_STEP), tmp_path / "run")
    stale = run / "checkpoints" / ".last.pt.999999999.tmp"  # a process that no longer exists
    stale.write_bytes(b"x" * 1000)
    train(smoke_config(synth_data, "epochs=2", "steps_per_epoch=1"), run, resume=True)
    assert not stale.exists() and f"removed {stale}" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so(tiny_run, synth_data, capsys):
    train(smoke_config(synth_data, *ONE_STEP), tiny_run, resume=True)
    err = capsys.readouterr().err
    assert "is already complete (1 steps" in err and "resuming at" not in err


# -------------------------------------------------------------------------------------------
# Bad files and paths: one line, exit 2


def test_read_only_output_locations_are_one_line_errors(
    tiny_run, synth_data, synthetic_archive, capsys
):
    place = "/proc/maxvit-readonly"  # writable for nobody, root included
    assert (
        main(["train", "--preset", "smoke", "--data", str(synth_data), "--out", f"{place}/run"])
        == 2
    )
    assert place in one_line_error(capsys)
    assert main(["data", "prepare", "--source", str(synthetic_archive), "--out", place]) == 2
    one_line_error(capsys)
    ckpt_file = tiny_run / "checkpoints" / "last.safetensors"
    assert main(["export", "--checkpoint", str(ckpt_file), "--out", f"{place}.onnx"]) == 2
    assert "/proc" in one_line_error(capsys)


def _png_bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_predict_refuses_a_decompression_bomb(tiny_run, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_bomb())
    assert main(["predict", "--checkpoint", str(tiny_run), str(bomb)]) == 2
    assert "decompression bomb" in one_line_error(capsys)


def _tampered(tiny_run: Path, tmp_path: Path, meta_change: dict, drop: str | None = None) -> Path:
    tensors, _ = ckpt.read_weights(tiny_run)
    with safetensors.safe_open(str(tiny_run / "checkpoints" / "best.safetensors"), "pt") as f:
        meta = dict(f.metadata())
    meta.update(meta_change)
    meta = {k: v for k, v in meta.items() if v is not None}
    if drop:
        tensors.pop(drop)
    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.safetensors"
    safetensors.torch.save_file(tensors, str(path), metadata=meta)
    return path


@pytest.mark.parametrize(
    "meta, drop, message",
    [
        ({"model": None}, None, "metadata lacks 'model'"),
        ({"img_size": "big"}, None, "bad checkpoint metadata"),
        ({"class_names": "[not json"}, None, "bad checkpoint metadata"),
        (
            {"class_names": json.dumps(["a", "b"]), "classes": None},
            None,
            "do not fit maxvit_nano with 2 classes",
        ),
        ({"model": "vit_nano"}, None, "do not fit vit_nano"),
        ({}, "head.bias", "1 missing"),
        ({"model": "nosuch"}, None, "unknown model 'nosuch'"),
    ],
)
def test_crafted_checkpoints_are_one_line_errors(
    tiny_run, synth_data, tmp_path, capsys, meta, drop, message
):
    path = _tampered(tiny_run, tmp_path, meta, drop)
    assert main(["eval", "--checkpoint", str(path), "--data", str(synth_data)]) == 2
    assert message in one_line_error(capsys)


def test_bad_training_states_are_one_line_errors(tiny_run, synth_data, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(smoke_config(synth_data), run / "config.yaml")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    args = ["train", "--preset", "smoke", "--data", str(synth_data), "--out", str(run), "--resume"]
    assert main(args) == 2
    assert "is empty (a write was cut short?)" in one_line_error(capsys)
    torch.save(
        {"model": {}, "evil": Path("/etc")}, run / "checkpoints" / "last.pt"
    )  # a pickled object
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "refused to load training state" in err and "weights_only" not in err
    (tmp_path / "ck").mkdir()
    assert (
        main(["eval", "--checkpoint", str(tmp_path / "ck" / "evil.pt"), "--data", str(synth_data)])
        == 2
    )
    assert f"checkpoint {tmp_path / 'ck' / 'evil.pt'} is missing" in one_line_error(capsys)
    torch.save({}, tmp_path / "ck" / "alone.pt")
    assert (
        main(["eval", "--checkpoint", str(tmp_path / "ck" / "alone.pt"), "--data", str(synth_data)])
        == 2
    )
    assert "has no weights file beside it (alone.safetensors is missing)" in one_line_error(capsys)


def test_a_half_written_metrics_line_is_dropped(synth_data, tmp_path, capsys):
    config = smoke_config(synth_data, "epochs=2", "steps_per_epoch=1")
    run = train(smoke_config(synth_data, *ONE_STEP), tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 2, "train_lo')  # the process died mid-write
    assert main(["report", str(run)]) == 0
    train(config, run, resume=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    capsys.readouterr()


def test_bad_numbers_on_the_command_line(tiny_run, synth_data, capsys):
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tiny_run),
                "--data",
                str(synth_data),
                "--num-workers",
                "-1",
            ]
        )
        == 2
    )
    one_line_error(capsys)
    assert main(["train", "--preset", "smoke", "--set", "lr=nan"]) == 2
    assert "lr must be a finite number" in one_line_error(capsys)
    assert main(["predict", "--checkpoint", str(tiny_run), "--top-k", "0", "x.png"]) == 2
    one_line_error(capsys)


# -------------------------------------------------------------------------------------------
# Newcomer friction


def test_predict_json_top_k_and_class_ids(tiny_run, synth_data, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    assert (
        main(["predict", "--checkpoint", str(tiny_run), "--top-k", "2", "--json", str(image)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result[0]["top"]) == 2
    wnids = (synth_data / "wnids.txt").read_text().split()
    assert all(entry["id"] in wnids for entry in result[0]["top"])
    assert main(["predict", "--checkpoint", str(tiny_run), str(image)]) == 0
    assert f"({result[0]['top'][0]['id']})" in capsys.readouterr().out


def test_checkpoint_files_get_ordinary_permissions(tiny_run):
    mask = os.umask(0)
    os.umask(mask)
    for name in ("last.safetensors", "best.safetensors", "last.pt"):
        assert (tiny_run / "checkpoints" / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert (tiny_run / "config.yaml").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_long_cpu_run_says_how_long_it_would_take(synth_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "CPU_NOTE_AFTER", 1)
    monkeypatch.setattr("maxvit.train.log.CPU_NOTE_AFTER_S", 0.0)
    train(smoke_config(synth_data, "epochs=1", "steps_per_epoch=2"), tmp_path / "run")
    err = capsys.readouterr().err
    assert "note: training on the CPU at" in err and "--preset cpu-budget --budget 10m" in err
    monkeypatch.setattr("maxvit.train.log.CPU_NOTE_AFTER_S", 3600.0)
    train(smoke_config(synth_data, "epochs=1", "steps_per_epoch=2"), tmp_path / "run2")
    assert "note: training on the CPU" not in capsys.readouterr().err  # a short run: no note


def test_help_says_where_the_prepared_copy_goes(capsys):
    for command in (["train", "--help"], ["data", "prepare", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        assert "~/.cache/maxvit" in capsys.readouterr().out.replace("\n", " ")


# -------------------------------------------------------------------------------------------
# Real signals sent to a training process


# 2 epochs x 10 steps; the signal lands at about step 3, with 17 steps (seconds) to spare.
STEPS = ("steps_per_epoch=10", "ckpt_every_steps=0")
ARGS = ("--preset", "smoke", *(a for s in STEPS for a in ("--set", s)))


def _signal_mid_run(
    data: Path, out: Path, cwd: Path, sig: int, twice: bool = False
) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        maxvit_command("train", *ARGS, "--data", str(data), "--out", str(out)),
        cwd=cwd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    try:
        for line in proc.stderr:  # the progress line of step 1 says training has begun
            lines.append(line)
            if " step 1/10 " in line:
                break
        time.sleep(0.3)
        proc.send_signal(sig)
        if twice:
            time.sleep(0.05)
            proc.send_signal(sig)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", "".join(lines) + rest)


@pytest.fixture(scope="module")
def uninterrupted(synth_data, tmp_path_factory) -> Path:
    """The run the interrupted ones must end equal to (one for both signals), trained in this
    process: the CLI builds the same config from ARGS, and one thread runs both."""
    return train(smoke_config(synth_data, *STEPS), tmp_path_factory.mktemp("u") / "run")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_step_and_resume_equals_an_uninterrupted_run(
    synth_data, uninterrupted, tmp_path, sig, code
):
    run = tmp_path / "run"
    stopped = _signal_mid_run(synth_data, run, tmp_path, sig)
    assert stopped.returncode == code, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("interrupted: SIG")
        and f"resume with: maxvit train --resume --out {run}" in last
    )
    progress = ckpt.load_state(run / "checkpoints" / "last.pt")["progress"]
    assert 0 < progress["step"] < 20 and f"at step {progress['step']} " in last
    run_maxvit("train", "--resume", "--out", str(run), cwd=tmp_path)
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(uninterrupted / "checkpoints" / "last.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_a_second_signal_stops_at_once(synth_data, tmp_path):
    stopped = _signal_mid_run(synth_data, tmp_path / "run", tmp_path, signal.SIGTERM, twice=True)
    assert stopped.returncode == -signal.SIGTERM  # no handler the second time: the default action


def test_a_signal_while_the_run_is_built_is_one_line_and_leaves_nothing(synth_data, tmp_path):
    """Before: SIGTERM between the run folder's lock and the first step killed the process
    without a word, leaving the lock file."""
    code = (
        "import sys, time\nfrom maxvit.train import build\n"
        "def slow(*args, **kwargs):\n    print('building', flush=True)\n    time.sleep(60)\n"
        "build.build_model = slow\nfrom maxvit.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "train", "--preset", "smoke", "--data", str(synth_data),
         "--out", str(run)],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "building\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err == f"interrupted: SIGTERM while starting the run in {run}; nothing was written\n"
    assert list(tmp_path.iterdir()) == []
