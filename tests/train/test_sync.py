"""A training step makes no host sync: what would stall a GPU's queue is counted on the CPU."""

from __future__ import annotations

import sys

import torch
import torch.distributed

from maxvit.train import trainer
from maxvit.train.trainer import train
from tests.train.utils import scale_loss_at, smoke_config


def test_a_training_step_makes_no_host_sync(synth_data, tmp_path, monkeypatch):
    """Calls from this project's code that read a tensor on the host (item, tolist) or wait
    for other ranks (all_reduce) are counted while a step runs; the syncs belong to `_sync`,
    every SYNC_EVERY steps, at checkpoints and at the end of the epoch. Library code (timm's and
    torchvision's augmentation parameters, drawn on the host) is not counted."""
    during_step: list[tuple[str, str]] = []
    syncs: list[int] = []
    in_step = [False]

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if in_step[0] and caller.startswith("maxvit"):
                during_step.append((name, caller))
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(torch.Tensor, "item", counted("item", torch.Tensor.item))
    monkeypatch.setattr(torch.Tensor, "tolist", counted("tolist", torch.Tensor.tolist))
    monkeypatch.setattr(
        torch.distributed, "all_reduce", counted("all_reduce", torch.distributed.all_reduce)
    )
    real_step, real_sync = trainer._Run._train_step, trainer._Run._sync

    def step(self, batches):
        in_step[0] = True
        try:
            return real_step(self, batches)
        finally:
            in_step[0] = False

    def sync(self):
        syncs.append(self.progress.step)
        return real_sync(self)

    monkeypatch.setattr(trainer._Run, "_train_step", step)
    monkeypatch.setattr(trainer._Run, "_sync", sync)
    monkeypatch.setattr(trainer, "SYNC_EVERY", 4)
    config = smoke_config(synth_data, "epochs=1", "steps_per_epoch=10", "ckpt_every_steps=0")
    train(config, tmp_path / "run")
    assert during_step == []
    assert syncs == [1, 4, 8, 10]  # the first step, every 4th, the end of the epoch


def test_a_non_finite_loss_is_named_at_the_next_sync(synth_data, tmp_path, monkeypatch):
    import pytest

    from maxvit.train.trainer import NonFiniteLoss

    scale_loss_at(monkeypatch, float("nan"), 6)  # step 6
    monkeypatch.setattr(trainer, "SYNC_EVERY", 4)
    config = smoke_config(synth_data, "epochs=1", "steps_per_epoch=10", "ckpt_every_steps=0")
    with pytest.raises(NonFiniteLoss, match=r"non-finite at step 6 \(epoch 1\); stopped at step 8"):
        train(config, tmp_path / "run")
