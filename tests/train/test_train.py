"""The training loop in-process: run folder contents, failures that must stop cleanly."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from maxvit.data import open_data
from maxvit.errors import UserError
from maxvit.train import checkpoint as ckpt
from maxvit.train.config import load_config
from maxvit.train.evaluate import evaluate_checkpoint
from maxvit.train.trainer import NonFiniteLoss, train
from tests.train.utils import read_weights, scale_loss_at, smoke_config

pytestmark = pytest.mark.slow  # training runs: about 20 s


@pytest.fixture(scope="module")
def smoke_run(synth_data, tmp_path_factory):
    """One uninterrupted `smoke` run (2 epochs x 3 steps, checkpoint every 2 steps)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    return train(smoke_config(synth_data), out)


def test_smoke_run_writes_a_complete_run_folder(smoke_run, synth_data):
    assert load_config(smoke_run / "config.yaml") == smoke_config(synth_data)
    rows = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [3, 6]
    keys = {
        "train_loss",
        "train_acc",
        "val_top1",
        "val_top5",
        "val_loss",
        "lr",
        "images_per_s",
        "epoch_time_s",
    }
    assert keys <= set(rows[0])
    assert rows[1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine to 0 at the last step
    for name in ("last.pt", "last.safetensors", "best.safetensors"):
        assert (smoke_run / "checkpoints" / name).is_file()
    assert any((smoke_run / "tensorboard").iterdir())
    assert (smoke_run / "curves.png").stat().st_size > 1000
    assert "best val top-1" in (smoke_run / "summary.md").read_text()
    state = ckpt.load_state(smoke_run / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] == 6
    # best.safetensors holds the weights of the best epoch, evaluated as logged
    best = max(rows, key=lambda r: r["val_top1"])
    _, info = ckpt.read_weights(smoke_run)
    assert info.epoch == best["epoch"] and len(info.class_names) == 200


def test_clean_train_accuracy_covers_every_train_image_unaugmented(smoke_run, synth_data):
    first = evaluate_checkpoint(smoke_run, synth_data, "train", num_workers=0)
    assert first["split"] == "train" and first["n"] == 400
    assert (
        evaluate_checkpoint(smoke_run, synth_data, "train", num_workers=0) == first
    )  # no random aug


def test_existing_run_needs_resume(smoke_run, synth_data):
    with pytest.raises(UserError, match="--resume"):
        train(smoke_config(synth_data), smoke_run)


def test_non_finite_loss_stops_naming_the_step(synth_data, tmp_path, monkeypatch):
    scale_loss_at(monkeypatch, float("nan"), 3)
    with pytest.raises(NonFiniteLoss, match="non-finite at step 3 .*last good checkpoint"):
        train(smoke_config(synth_data), tmp_path / "run")
    state = ckpt.load_state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_full_disk_keeps_last_good_checkpoint_and_resumes_exactly(
    smoke_run, synth_data, tmp_path, monkeypatch
):
    """Disk full at the 2nd checkpoint (end of epoch 1): the step-2 checkpoint survives, and
    resuming from it reproduces the uninterrupted run."""
    real_save = torch.save
    saves = []

    def save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            f.write(b"partial")  # the checkpoint writer hands torch.save an open file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    with pytest.raises(UserError, match="cannot write checkpoint .* at step 3: No space left"):
        train(smoke_config(synth_data), out)
    monkeypatch.undo()
    assert ckpt.load_state(out / "checkpoints" / "last.pt")["progress"]["step"] == 2
    assert not list((out / "checkpoints").glob(".*"))  # no temporary left behind
    train(smoke_config(synth_data), out, resume=True)
    final = read_weights(out / "checkpoints" / "last.safetensors")
    reference = read_weights(smoke_run / "checkpoints" / "last.safetensors")
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[k], reference[k]) for k in final)
    assert (out / "metrics.jsonl").read_text().count("\n") == 2


def test_missing_data_points_at_download_and_prepare(tmp_path):
    with pytest.raises(UserError, match="does not exist; accepted layouts.*maxvit data download"):
        train(smoke_config(tmp_path / "nowhere"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_unreachable_download_names_the_data_option(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise UserError("cannot reach http://cs231n.stanford.edu/tiny-imagenet-200.zip: offline")

    monkeypatch.setattr("maxvit.data.download.download", offline)
    with pytest.raises(UserError) as info:
        open_data(tmp_path / "data", download=True)
    message = str(info.value)
    assert (
        "\n" not in message and "cannot download Tiny ImageNet" in message and "--data" in message
    )


def test_paper_style_options_ema_is_what_gets_evaluated_and_saved(synth_data, tmp_path):
    """EMA, stochastic depth, warmup, clipping, timm mixing, no decay on 1-d parameters."""
    overrides = (
        "ema_decay=0.5",
        "drop_path=0.1",
        "warmup_epochs=1",
        "clip_grad=1.0",
        "decay_norm_bias=false",
        "aug.pipeline=timm",
        "epochs=1",
    )
    run = train(smoke_config(synth_data, *overrides), tmp_path / "run")
    state = ckpt.load_state(run / "checkpoints" / "last.pt")
    decays = sorted({g["weight_decay"] for g in state["optimizer"]["param_groups"]})
    assert decays == [0.0, 0.05]
    saved = read_weights(run / "checkpoints" / "last.safetensors")
    raw, ema = state["model"], state["ema"]
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)  # not the raw weights...
    assert all(torch.equal(saved[k], ema[f"module.{k}"]) for k in saved)  # ...but the EMA
    logged = json.loads((run / "metrics.jsonl").read_text())
    assert evaluate_checkpoint(run, synth_data, num_workers=0)["top1"] == logged["val_top1"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("model=nosuch", "unknown model 'nosuch'"),
        ("img_size=33", "odd and cannot be halved"),
        ("batch_size=512", "fewer than the batch size"),  # 400 images; fits in memory
    ],
)
def test_a_failed_start_leaves_no_run_folder(synth_data, tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        train(smoke_config(synth_data, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_data_set_without_a_val_split_is_refused_before_the_run_starts(
    synth_data, tmp_path, monkeypatch
):
    """Folders and shard folders are refused when opened; a shard pattern naming train shards
    only opens, and the trainer refuses it before the first step."""
    from maxvit.train import build

    real = build.open_source

    def without_val(*args, **kwargs):
        source = real(*args, **kwargs)
        monkeypatch.setattr(type(source), "has_split", lambda self, split: split != "val")
        return source

    monkeypatch.setattr(build, "open_source", without_val)
    with pytest.raises(UserError, match="has no val split to evaluate on"):
        train(smoke_config(synth_data), tmp_path / "run")
    assert not (tmp_path / "run").exists()
