"""precision: auto | bf16 | fp16 | fp32, trained on the CPU too; fp16 with loss scaling."""

from __future__ import annotations

import pytest
import torch

from maxvit.device import resolve_precision
from maxvit.errors import UserError
from maxvit.train import checkpoint as ckpt
from maxvit.train import trainer
from maxvit.train.trainer import train
from tests.train.utils import interrupt_at_step, read_weights, scale_loss_at, smoke_config

SHORT = ("epochs=1", "steps_per_epoch=4", "ckpt_every_steps=2")


def test_auto_is_fp32_on_the_cpu_and_names_are_checked():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert [resolve_precision(p, cpu) for p in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)
    with pytest.raises(UserError, match="precision must be one of"):
        smoke_config("x", "precision=half")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_smoke_trains_in_reduced_precision(synth_data, tmp_path, precision):
    run = train(smoke_config(synth_data, *SHORT, f"precision={precision}"), tmp_path / "run")
    state = ckpt.load_state(run / "checkpoints" / "last.pt")
    assert ("scaler" in state) == (precision == "fp16")  # loss scaling for fp16 only
    weights = read_weights(run / "checkpoints" / "last.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


@pytest.mark.slow  # two training runs
def test_an_fp16_overflow_is_skipped_by_the_scaler_not_a_stop(synth_data, tmp_path, monkeypatch):
    calls = scale_loss_at(monkeypatch, float("inf"), 2)
    run = train(smoke_config(synth_data, *SHORT, "precision=fp16"), tmp_path / "run")
    scale = ckpt.load_state(run / "checkpoints" / "last.pt")["scaler"]["scale"]
    assert scale == 2.0**16 / 2  # the initial scale, halved once by the skipped step
    with pytest.raises(trainer.NonFiniteLoss):  # the same loss in fp32 stops the run
        calls["n"] = 0
        train(smoke_config(synth_data, *SHORT, "precision=fp32"), tmp_path / "fp32")


@pytest.mark.slow  # three training runs
def test_fp16_resume_restores_the_scaler_and_equals_an_uninterrupted_run(
    synth_data, tmp_path, monkeypatch
):
    """An overflow at step 1 halves the scale; the run resumed at step 4 must carry that scale
    (a fresh scaler's would round the fp16 gradients differently)."""
    config = smoke_config(
        synth_data, "epochs=1", "steps_per_epoch=5", "ckpt_every_steps=2", "precision=fp16"
    )
    losses = scale_loss_at(monkeypatch, float("inf"), 1)
    reference = train(config, tmp_path / "reference")
    losses["n"] = 0
    interrupt_at_step(monkeypatch, 5)  # the checkpoint of step 4 is on disk
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run")
    run = train(config, tmp_path / "run", resume=True)
    assert ckpt.load_state(run / "checkpoints" / "last.pt")["scaler"]["scale"] == 2.0**15
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
