"""Our variants in timm's registry: names, timm's arguments, features_only, pretrained files."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import model_entrypoint

import maxvit.models.timm_registry as registry
from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.models.convert import to_timm
from maxvit.models.model import MaxVit
from maxvit.models.variants import VARIANTS
from tests.models.small import SMALL_PAPER


def test_every_variant_is_registered_beside_timms_own_maxvits():
    assert timm.list_models(module="timm_registry") == sorted(VARIANTS)
    for name in VARIANTS:
        assert model_entrypoint(name).__module__ == "maxvit.models.timm_registry"
        assert timm.models.get_pretrained_cfg(name).architecture == name
    for theirs in ("maxvit_tiny_tf_224", "maxvit_nano_rw_256"):
        assert model_entrypoint(theirs).__module__ == "timm.models.maxxvit"
    # the paper variants point at the official weights (hf_hub_id), converted on load
    paper = sorted(name for name, v in VARIANTS.items() if v.timm_name)
    assert (
        timm.list_models(pretrained=True, module="timm_registry")
        == paper
        == [
            "maxvit_base",
            "maxvit_large",
            "maxvit_small",
            "maxvit_tiny",
        ]
    )


def test_a_name_timm_already_has_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "is_model", lambda name: True)
    monkeypatch.setattr(registry, "model_entrypoint", lambda name: timm.models.resnet18)
    with pytest.raises(UserError, match="timm already registers a model named 'maxvit_seed'"):
        registry._register("maxvit_seed")


def test_timm_create_model_builds_ours():
    with torch.device("meta"):
        model = timm.create_model("maxvit_seed", num_classes=200)
        ours = create_model("maxvit_seed")
    assert isinstance(model, MaxVit) and model.config == VARIANTS["maxvit_seed"].config
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }
    assert model.pretrained_cfg["architecture"] == "maxvit_seed"
    assert timm.create_model("maxvit_nano").num_classes == 200  # the registered default


def test_timm_arguments_reach_the_model():
    model = timm.create_model(
        "maxvit_nano", num_classes=5, img_size=(32, 32), drop_path_rate=0.2, head_dim=16
    ).eval()
    assert (model.num_classes, model.img_size) == (5, 32)
    assert (model.config.drop_path, model.config.head_dim) == (0.2, 16)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert model.pretrained_cfg["pool_size"] == (1, 1)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(in_chans=1), "takes RGB input"),
        (dict(img_size=(64, 32)), "takes square input"),
        (dict(drop_rate=0.1), "no dropout before the classifier"),
        (dict(global_pool="max"), "global_pool must be 'avg' or ''"),
    ],
)
def test_unsupported_timm_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        timm.create_model("maxvit_nano", **kwargs)


def _file(tmp_path, state: dict[str, torch.Tensor]):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return dict(file=str(path))


def test_pretrained_file_of_ours_loads_through_timm(tmp_path):
    torch.manual_seed(0)
    src = create_model("maxvit_nano")
    overlay = _file(tmp_path, src.state_dict())
    model = timm.create_model("maxvit_nano", pretrained=True, pretrained_cfg_overlay=overlay)
    for (k, a), b in zip(src.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    ten = timm.create_model(
        "maxvit_nano", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10
    )
    assert torch.equal(ten.stem.conv1.conv.weight, src.stem.conv1.conv.weight)
    assert ten.head.out_features == 10


def test_pretrained_file_that_does_not_fit_is_refused_not_half_loaded(tmp_path):
    paper = create_model("maxvit_tiny", **SMALL_PAPER)
    overlay = _file(tmp_path, paper.state_dict())  # our keys, the other design
    with pytest.raises(UserError, match="does not fit maxvit_nano: .*missing.*unexpected"):
        timm.create_model("maxvit_nano", pretrained=True, pretrained_cfg_overlay=overlay)


def test_pretrained_timm_format_file_is_converted_for_a_paper_variant(tmp_path):
    torch.manual_seed(0)
    src = create_model("maxvit_tiny", num_classes=1000, **SMALL_PAPER).eval()
    overlay = _file(tmp_path, to_timm(src.state_dict(), "maxvit_tiny"))
    model = timm.create_model(
        "maxvit_tiny", pretrained=True, pretrained_cfg_overlay=overlay, **SMALL_PAPER
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x))
