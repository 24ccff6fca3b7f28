"""Weights both ways: `to_timm`, `export_timm` (timm model folders), and `pretrained=` with our
own checkpoints of every registry model."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

import maxvit.models.timm_registry  # noqa: F401  (export folders of seed-design models)
from maxvit.errors import UserError
from maxvit.models import create_model, list_models
from maxvit.models.convert import from_timm, our_keys, to_timm
from maxvit.train.checkpoint import read_weights, save_weights
from maxvit.train.export import export_timm
from tests.models.small import SMALL_PAPER


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so that eval mode tests them too."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_to_timm_inverts_from_timm_exactly():
    torch.manual_seed(0)
    state = create_model("maxvit_tiny", **SMALL_PAPER).state_dict()
    theirs = to_timm(state, "maxvit_tiny")
    assert "stages.0.blocks.0.conv.se.fc1.weight" in theirs
    assert theirs["stages.0.blocks.0.conv.se.fc1.weight"].ndim == 4  # a 1x1 conv in timm
    assert "stages.3.blocks.0.attn_grid.attn.rel_pos.relative_position_bias_table" in theirs
    back = from_timm(theirs, "maxvit_tiny")
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_to_timm_refuses_seed_designs_and_unknown_keys():
    with pytest.raises(UserError, match="paper variants only .*not 'maxvit_nano'"):
        to_timm({}, "maxvit_nano")
    with pytest.raises(UserError, match=r"1 maxvit key\(s\) have no mapping, e.g. \['extra.w'\]"):
        to_timm({"extra.w": torch.zeros(1)}, "maxvit_tiny")


@pytest.mark.slow
def test_to_timm_loads_into_timms_maxvit_tiny_with_the_same_logits():
    torch.manual_seed(0)
    ours = _randomised(create_model("maxvit_tiny"))
    theirs = timm.create_model("maxvit_tiny_tf_224", num_classes=200).eval()
    theirs.load_state_dict(to_timm(ours.state_dict(), "maxvit_tiny"), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5


def _checkpoint(tmp_path, name: str, size: int, zeros: bool = False):
    """A maxvit training checkpoint (weights + metadata) of a random model, three classes;
    `zeros`: all-zero weights, without the time random initialisation takes."""
    torch.manual_seed(0)
    with torch.device("meta" if zeros else "cpu"):
        model = create_model(name, num_classes=3, img_size=size)
    if zeros:
        model = model.to_empty(device="cpu").requires_grad_(False)
        for t in model.state_dict().values():
            t.zero_()
    model = _randomised(model)
    path = tmp_path / f"{name}.safetensors"
    meta = dict(
        model=name,
        img_size=size,
        class_names=["cat", "dog", "eel"],
        classes=["n1", "n2", "n3"],
        eval_crop=0.9,
        step=1,
        epoch=1,
    )
    save_weights(path, model.state_dict(), meta)
    return model, path


def _loads_in_timm(folder, model, size: int) -> torch.nn.Module:
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() <= 1e-5
    return loaded


def test_export_timm_writes_a_folder_timm_loads(tmp_path):
    model, path = _checkpoint(tmp_path, "maxvit_nano", 64)
    folder = export_timm(path)
    assert folder == tmp_path / "maxvit_nano-timm"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "maxvit_nano"
    assert config["label_names"] == ["n1", "n2", "n3"]
    assert config["label_descriptions"] == {"n1": "cat", "n2": "dog", "n3": "eel"}
    loaded = _loads_in_timm(folder, model, 64)
    assert timm.data.resolve_model_data_config(loaded) == dict(
        input_size=(3, 64, 64),
        interpolation="bilinear",
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        crop_pct=0.9,
        crop_mode="center",
    )


@pytest.mark.slow
def test_export_timm_of_a_paper_variant_is_timms_own_model(tmp_path):
    """Written as timm's maxvit_tiny_tf_224 (the export loads it strictly into that model; the
    logits are test_to_timm_loads_into_timms_maxvit_tiny_with_the_same_logits)."""
    _, path = _checkpoint(tmp_path, "maxvit_tiny", 224, zeros=True)
    folder = export_timm(path, tmp_path / "out")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "maxvit_tiny_tf_224"
    assert config["model_args"]["img_size"] == [224, 224]
    assert "transformer_window_size" not in config["model_args"]  # timm's 224 / 32 = 7
    with torch.device("meta"):
        theirs = timm.create_model("maxvit_tiny_tf_224", num_classes=3).state_dict()
    assert sorted(load_file(folder / "model.safetensors")) == sorted(theirs)


@pytest.mark.slow
def test_export_timm_at_448_sets_timms_partition_to_ours(tmp_path):
    """timm partitions img_size / 32 = 14 by default, ours 7: the export says 7 (the strict
    load inside the export fails on the relative-position tables otherwise)."""
    _, path = _checkpoint(tmp_path, "maxvit_tiny", 448, zeros=True)
    config = json.loads((export_timm(path) / "config.json").read_text())
    assert config["model_args"]["transformer_window_size"] == [7, 7]
    assert config["model_args"]["transformer_grid_size"] == [7, 7]


def test_export_timm_refuses_baselines(tmp_path):
    _, path = _checkpoint(tmp_path, "vit_nano", 64)
    with pytest.raises(UserError, match="timm export takes the MaxViT variants"):
        export_timm(path)


@pytest.mark.parametrize(
    "name",
    [n if n.endswith("_nano") else pytest.param(n, marks=pytest.mark.slow) for n in list_models()],
)
def test_own_checkpoints_of_every_model_are_taken_as_ours(name):
    with torch.device("meta"):
        state = create_model(name).state_dict()
    assert our_keys(state, name) == (state, "maxvit")


@pytest.mark.parametrize("name", ["maxvit_nano", "vit_nano", "coatnet_nano"])
def test_pretrained_loads_our_own_checkpoints(tmp_path, name):
    model, path = _checkpoint(tmp_path, name, 64)
    tensors, _ = read_weights(path)
    same = create_model(name, num_classes=3, pretrained=path).eval()
    assert all(torch.equal(v, tensors[k]) for k, v in same.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x))
        features = create_model(name, num_classes=0, pretrained=path).eval()(x)
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        assert features.shape == (1, model.head_hidden_size)
        torch.testing.assert_close(features, expected)
