"""Baselines (ViT, CoAtNet from timm): registry, size pass-through, CPU forward, sizing."""

from __future__ import annotations

import pytest
import torch

from maxvit.models import create_model, default_img_size, list_models
from maxvit.models.baselines import BASELINES, Baseline


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_table_holds_the_issue_baselines() -> None:
    assert set(BASELINES) == {
        "vit_base_16",
        "vit_small_16",
        "coatnet_0",
        "vit_nano",
        "coatnet_nano",
    }
    assert all(isinstance(b, Baseline) for b in BASELINES.values())
    assert set(BASELINES) <= set(list_models())
    assert default_img_size("vit_nano") == 64 and default_img_size("coatnet_0") == 224


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_runs_at_64(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("size", "patch", "tokens"), [(224, 16, 196), (64, 8, 64)])
def test_vit_patch_follows_input_size(size: int, patch: int, tokens: int) -> None:
    model = create_model("vit_small_16", img_size=size)
    assert model.patch_embed.proj.kernel_size == (patch, patch)
    assert model.patch_embed.num_patches == tokens
    assert len(model.blocks) == 12
    # The positional embedding is built for this size (class token + patches).
    assert model.pos_embed.shape[1] == tokens + 1


def test_patch_size_override_wins() -> None:
    model = create_model("vit_nano", img_size=64, patch_size=16)
    assert model.patch_embed.num_patches == 16


@pytest.mark.slow
def test_vit_base_is_vit_b16_at_224() -> None:
    model = create_model("vit_base_16")
    assert model.embed_dim == 768 and len(model.blocks) == 12
    # ViT-B/16 has 86.6 M parameters with a 1000-class head; 200 classes remove 800*769.
    assert n_params(model) == 86_567_656 - 800 * 769


def test_coatnet_0_builds_for_its_input_size() -> None:
    # CoAtNet's transformer stages attend over the whole map, so the relative-position
    # table depends on img_size: a model built for 96 must run at 96.
    model = create_model("coatnet_0", img_size=96, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 7)


@pytest.fixture(scope="module")
def maxvit_nano_params() -> int:
    return n_params(create_model("maxvit_nano", img_size=64))


@pytest.mark.parametrize("name", ["vit_nano", "coatnet_nano"])
def test_nano_baselines_match_maxvit_nano_parameters(name: str, maxvit_nano_params: int) -> None:
    mine = n_params(create_model(name, img_size=64))
    assert abs(mine / maxvit_nano_params - 1) <= 0.25, (name, mine, maxvit_nano_params)


def test_drop_path_is_passed_to_timm() -> None:
    model = create_model("vit_nano", drop_path=0.1)
    # timm's stochastic depth grows linearly over the blocks up to drop_path_rate.
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert isinstance(model.blocks[0].drop_path1, torch.nn.Identity)


def test_models_command_lists_every_model_with_its_size_and_description(capsys) -> None:
    from maxvit.cli import main

    assert main(["models"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == list_models()
    table = {name: (size, what) for name, size, what in rows}
    assert table["maxvit_seed"] == ("224", "MaxViT, seed design")
    assert table["vit_nano"] == ("64", BASELINES["vit_nano"].description)
