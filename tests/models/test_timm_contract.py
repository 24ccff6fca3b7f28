"""timm's own model-contract assertions, ported from timm's tests/test_models.py
(`test_model_default_cfgs`, `..._non_std`, `test_model_forward_features`,
`test_model_forward_intermediates`, `..._intermediates_features`), run on every registered MaxViT
and on the baselines.

Shape-only assertions run on the meta device (no memory, no arithmetic), so that every
variant, `maxvit_large` too, is checked in seconds. Assertions on values (no NaN, equal to
`forward_features`, equal under grad checkpointing) run on real tensors: on `maxvit_nano` (seed
design), on a small `maxvit_tiny` (paper design, tests/models/small.py) and on the CPU-sized
baselines.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.layers import get_channel_dim, get_spatial_dim
from timm.models import FeatureInfo, FeatureListNet

import maxvit.models.timm_registry  # noqa: F401  (our names in timm's registry)
from maxvit.models import create_model, default_img_size
from maxvit.models.baselines import BASELINES
from maxvit.models.variants import VARIANTS
from tests.models.small import SMALL_PAPER

# Meta tensors run each op through Python shape functions: a 224 px model takes seconds.
SLOW = {name for name in [*VARIANTS, *BASELINES] if default_img_size(name) > 64}
NON_STD = {name for name in BASELINES if name.startswith("vit_")}  # timm's NON_STD_FILTERS
# Real-valued runs: (name, create_model overrides): both MaxViT designs, CPU-sized baselines.
REAL = [("maxvit_nano", {}), ("maxvit_tiny", SMALL_PAPER), ("vit_nano", {}), ("coatnet_nano", {})]


def _names(names) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _input_size(model: torch.nn.Module) -> tuple[int, int, int]:
    return tuple(model.default_cfg["input_size"])


def _create(name: str, **kwargs) -> torch.nn.Module:
    """The models by name, with timm's arguments: the MaxViTs through timm's registry."""
    if name in VARIANTS:
        return timm.create_model(name, pretrained=False, **kwargs)
    return create_model(name, **kwargs)


def _build(name: str, **kwargs) -> tuple[torch.nn.Module, str]:
    """(model, device): a 224 px model on the meta device (shapes only: it would take seconds
    to compute), a 64 px one on the CPU, where it runs faster than through meta's Python shape
    functions."""
    device = "meta" if name in SLOW else "cpu"
    with torch.device(device):
        return _create(name, **kwargs).eval(), device


def _built_with_sizes(name):
    """The model, its device and state dict, after timm's checks of the size attributes."""
    model, device = _build(name)
    assert model.num_classes >= 0
    assert model.num_features > 0
    assert model.head_hidden_size > 0
    return model, device, model.state_dict()


@pytest.mark.parametrize("name", _names(n for n in [*VARIANTS, *BASELINES] if n not in NON_STD))
def test_model_default_cfgs(name):
    model, device, state_dict = _built_with_sizes(name)
    cfg = model.default_cfg
    pool_size = cfg["pool_size"]
    input_size = _input_size(model)
    spatial_axis = get_spatial_dim("NCHW")
    feat_axis = get_channel_dim("NCHW")
    input_tensor = torch.zeros((1, *input_size), device=device)

    outputs = model.forward_features(input_tensor)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    assert outputs.shape[spatial_axis[0]] == pool_size[0]
    assert outputs.shape[spatial_axis[1]] == pool_size[1]
    assert outputs.shape[feat_axis] == model.num_features
    assert outputs_pre.shape[1] == model.head_hidden_size

    model.reset_classifier(0)
    assert model.num_classes == 0
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 2
    assert outputs.shape[1] == model.head_hidden_size
    assert outputs.shape == outputs_pre.shape

    model.reset_classifier(0, "")
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 4
    assert outputs.shape[spatial_axis[0]] == pool_size[0]
    assert outputs.shape[spatial_axis[1]] == pool_size[1]

    model, _ = _build(name, num_classes=0, global_pool="")
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 4
    assert outputs.shape[spatial_axis[0]] == pool_size[0]
    assert outputs.shape[spatial_axis[1]] == pool_size[1]

    if cfg.get("num_classes", None):
        for c in (cfg["classifier"],):
            assert c + ".weight" in state_dict.keys(), f"{c} not in model params"
    for fc in (cfg["first_conv"],):
        assert fc + ".weight" in state_dict.keys(), f"{fc} not in model params"


@pytest.mark.parametrize("name", _names(sorted(NON_STD)))
def test_model_default_cfgs_non_std(name):
    model, device, state_dict = _built_with_sizes(name)
    cfg = model.default_cfg
    input_tensor = torch.zeros((1, *_input_size(model)), device=device)
    outputs = model.forward_features(input_tensor)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    feat_dim = -1 if outputs.ndim == 3 else 1
    assert outputs.shape[feat_dim] == model.num_features
    assert outputs_pre.shape[1] == model.head_hidden_size
    model.reset_classifier(0)
    assert model.num_classes == 0
    outputs = model.forward(input_tensor)
    assert outputs.shape[feat_dim] == model.head_hidden_size
    assert outputs.shape == outputs_pre.shape
    model, _ = _build(name, num_classes=0)
    outputs = model.forward(input_tensor)
    assert outputs.shape[feat_dim] == model.num_features
    assert cfg["classifier"] + ".weight" in state_dict.keys()
    assert cfg["first_conv"] + ".weight" in state_dict.keys()


def _check_maps(maps, channels, reductions, input_size, batch_size, values):
    """timm's per-map assertions: channels, at most ceil(side / reduction) + 1, no NaN."""
    assert len(channels) == len(maps)
    for e, r, o in zip(channels, reductions, maps, strict=True):
        assert e == o.shape[1]
        assert o.shape[2] <= math.ceil(input_size[1] / r) + 1
        assert o.shape[3] <= math.ceil(input_size[2] / r) + 1
        assert o.shape[0] == batch_size
        if values:
            assert not torch.isnan(o).any()


def _forward_intermediates_asserts(model: torch.nn.Module, values: bool) -> None:
    model.eval()
    feature_info = FeatureInfo(model.feature_info, len(model.feature_info))
    assert len(feature_info.channels()) >= 3
    input_size = _input_size(model)
    inpt = torch.randn((1, *input_size), device=next(model.parameters()).device)
    output, intermediates = model.forward_intermediates(inpt, output_fmt="NCHW")
    _check_maps(
        intermediates, feature_info.channels(), feature_info.reduction(), input_size, 1, values
    )
    output2 = model.forward_features(inpt)
    if not values:
        assert output.shape == output2.shape
        return
    assert torch.allclose(output, output2)
    model.set_grad_checkpointing()
    output3, _ = model.forward_intermediates(inpt, output_fmt="NCHW")
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.slow
def test_model_forward_intermediates_shapes_of_the_seed_at_224():
    _forward_intermediates_asserts(_build("maxvit_seed")[0], values=False)


@pytest.mark.parametrize("name,overrides", REAL, ids=[n for n, _ in REAL])
def test_model_forward_intermediates(name, overrides):
    torch.manual_seed(0)
    _forward_intermediates_asserts(create_model(name, **overrides), values=True)


def _features_model(name: str, overrides: dict, **kwargs) -> torch.nn.Module:
    """timm's features_only model: through the registry for MaxViTs; for the CoAtNet baseline
    the wrapper timm's builder would put around it."""
    torch.manual_seed(0)
    if name in VARIANTS:
        return timm.create_model(name, features_only=True, **overrides, **kwargs)
    return FeatureListNet(create_model(name, **overrides), (0, 1, 2, 3, 4), flatten_sequential=True)


@pytest.mark.parametrize(
    "name,overrides",
    [r for r in REAL if r[0] not in NON_STD],
    ids=[n for n, _ in REAL[:2]] + ["coatnet_nano"],
)
def test_model_forward_features(name, overrides):
    model = _features_model(name, overrides).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 3
    input_size = _input_size(model) if name in VARIANTS else (3, 64, 64)
    outputs = model(torch.randn((1, *input_size)))
    _check_maps(outputs, channels, reductions, input_size, 1, values=True)


@pytest.mark.parametrize("name,overrides", REAL[:2], ids=[n for n, _ in REAL[:2]])
def test_model_forward_intermediates_features(name, overrides):
    model = _features_model(name, overrides, feature_cls="getter").eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    input_size = _input_size(model)
    outputs = model(torch.randn((1, *input_size)))
    _check_maps(outputs, channels, reductions, input_size, 1, values=True)
