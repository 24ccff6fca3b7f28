"""What a run is built from: layer-wise lr decay through the model's timm layer groups."""

from __future__ import annotations

import pytest
import torch

from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.train.build import build_optimizer, build_scheduler
from maxvit.train.config import apply_overrides, load_preset


def _lr_of(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_layer_decay_scales_the_stem_least_and_keeps_the_head_at_the_full_lr():
    """maxvit_nano's layer groups: the stem, its 5 blocks, the head (7 layers), so the stem gets
    0.5^6 of the lr, the first block 0.5^5, the head 0.5^0; the schedule scales them alike."""
    config = apply_overrides(load_preset("cpu-mini"), ["layer_decay=0.5", "lr=0.01"])
    model = create_model("maxvit_nano")
    optimizer = build_optimizer(config, model, torch.device("cpu"))
    stem = next(model.stem.parameters())
    first_block = next(model.stages[0].parameters())
    head = model.get_classifier().weight
    assert _lr_of(optimizer, stem) == pytest.approx(0.01 * 0.5**6)
    assert _lr_of(optimizer, first_block) == pytest.approx(0.01 * 0.5**5)
    assert _lr_of(optimizer, head) == pytest.approx(0.01)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.parameters()
    }  # every parameter exactly once
    scheduler = build_scheduler(config, optimizer, 10, lambda: 20)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    assert _lr_of(optimizer, stem) / _lr_of(optimizer, head) == pytest.approx(0.5**6)


def test_layer_decay_is_checked():
    with pytest.raises(UserError, match="layer_decay must be in"):
        apply_overrides(load_preset("cpu-mini"), ["layer_decay=1.5"])
    with pytest.raises(UserError, match="set decay_norm_bias false"):
        apply_overrides(load_preset("seed"), ["layer_decay=0.75"])
    assert load_preset("finetune").layer_decay == 0.75
