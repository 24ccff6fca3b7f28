"""The model API against timm's own MaxViT where both behave the same; the timm API details.

The twin: timm's ``maxvit_tiny_tf`` design and ours (``maxvit_tiny``), both one narrow block per
stage at 64 px (tests/models/small.py), ours loaded with timm's weights and non-trivial
BatchNorm statistics. The full-size `maxvit_tiny_tf_224` equivalence lives in test_convert.py
and test_weights.py.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.models import group_parameters
from timm.optim import param_groups_layer_decay

from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.models.convert import from_timm
from tests.models.small import SMALL_PAPER, timm_small_paper

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _twins() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    theirs = timm_small_paper(num_classes=10).eval()
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = create_model("maxvit_tiny", num_classes=10, **SMALL_PAPER).eval()
    ours.load_state_dict(from_timm(theirs.state_dict(), "maxvit_tiny"))
    return ours, theirs


@pytest.fixture(scope="module")
def built_twins():
    return _twins()


@pytest.fixture
def twins(built_twins):
    """Fresh copies for each test (tests reset heads and prune)."""
    return copy.deepcopy(built_twins)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_feature_info_equals_timms(twins):
    ours, theirs = twins
    assert ours.feature_info == [
        {k: info[k] for k in ("num_chs", "reduction", "module")} for info in theirs.feature_info
    ]
    assert (ours.num_features, ours.head_hidden_size) == (96, 96)
    assert (theirs.num_features, theirs.head_hidden_size) == (96, 96)


@pytest.mark.parametrize(
    "kwargs,count",
    [
        ({}, 5),
        ({"indices": 2}, 2),
        ({"indices": [-1]}, 1),
        ({"indices": [0, -2]}, 2),
        ({"indices": [1], "stop_early": True}, 1),
        ({"indices": 3, "norm": True}, 3),
        ({"indices": [1, 3], "intermediates_only": True}, 2),
    ],
    ids=str,
)
@torch.no_grad()
def test_forward_intermediates_equals_timms(twins, kwargs, count):
    ours, theirs = twins
    a, b = ours.forward_intermediates(X, **kwargs), theirs.forward_intermediates(X, **kwargs)
    if not kwargs.get("intermediates_only"):
        (a_last, a), (b_last, b) = a, b
        _close(a_last, b_last)
    assert len(a) == len(b) == count
    for p, q in zip(a, b, strict=True):
        _close(p, q)


@torch.no_grad()
def test_norm_changes_nothing_and_nhwc_is_a_permuted_view(twins):
    ours, _ = twins
    _, plain = ours.forward_intermediates(X)
    _, normed = ours.forward_intermediates(X, norm=True)
    _, nhwc = ours.forward_intermediates(X, output_fmt="NHWC")
    for p, n, h in zip(plain, normed, nhwc, strict=True):
        assert torch.equal(p, n)
        assert torch.equal(h, p.permute(0, 2, 3, 1))


@torch.no_grad()
def test_heads_without_classifier_or_pooling_equal_timms(twins):
    ours, theirs = twins
    _close(ours.forward_features(X), theirs.forward_features(X))
    features = ours.forward_features(X)
    _close(ours.forward_head(features, pre_logits=True), theirs.forward_head(features, True))
    for args in ((0,), (0, ""), (7, "")):
        ours.reset_classifier(*args)
        theirs.reset_classifier(*args)
        if args[0]:  # the same fresh classifier (timm's is a 1x1 conv without pooling)
            ours.head.weight.copy_(theirs.head.fc.weight.flatten(1))
            ours.head.bias.copy_(theirs.head.fc.bias)
        _close(ours(X), theirs(X))
        assert ours.num_classes == theirs.num_classes == args[0]
    assert ours(X).shape == (2, 7, 2, 2)
    ours.reset_classifier(5, "avg")
    assert ours(X).shape == (2, 5) and ours.global_pool == "avg"


@torch.no_grad()
def test_pruned_models_equal_timms(twins):
    ours, theirs = twins
    assert ours.prune_intermediate_layers([1, 2]) == theirs.prune_intermediate_layers([1, 2])
    assert len(ours.stages) == len(theirs.stages) == 2
    assert ours.num_features == ours.head_hidden_size == theirs.num_features == 64
    assert ours.num_classes == 0 and isinstance(ours.get_classifier(), torch.nn.Identity)
    a = ours.forward_intermediates(X, indices=[1, 2], intermediates_only=True)
    b = theirs.forward_intermediates(X, indices=[1, 2], intermediates_only=True)
    for p, q in zip(a, b, strict=True):
        _close(p, q)
    _close(ours(X), theirs(X))  # no head: the last kept map


def test_coarse_groups_equal_timms_and_fine_groups_are_blocks(twins):
    ours, theirs = twins
    mine = group_parameters(ours, ours.group_matcher(coarse=True), reverse=True)
    timms = group_parameters(theirs, theirs.group_matcher(coarse=True), reverse=True)
    renamed = from_timm({k: torch.empty(0) for k in timms}, "maxvit_tiny")  # keys in order
    assert mine == dict(zip(renamed, timms.values(), strict=True))
    assert max(mine.values()) == 5  # stem, 4 stages, head
    fine = group_parameters(ours, ours.group_matcher(), reverse=True)
    assert fine["stem.conv1.conv.weight"] == 0
    assert fine["stages.2.0.mbconv.expand.conv.weight"] == 3
    assert fine["head.weight"] == fine["head_norm.weight"] == 5


def test_no_weight_decay_holds_timms_and_every_1d_parameter(twins):
    ours, theirs = twins
    timms = from_timm({k: torch.empty(0) for k in theirs.no_weight_decay()}, "maxvit_tiny")
    skip = ours.no_weight_decay()
    assert set(timms) <= skip
    assert skip == {n for n, p in ours.named_parameters() if p.ndim == 1} | set(timms)


def test_layer_decay_scales_from_the_group_matcher():
    """timm's layer-wise lr decay on maxvit_nano: stem, 5 blocks, head = 7 layers."""
    model = create_model("maxvit_nano")
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert scale["stem.conv1.conv.weight"] == 0.5**6
    assert scale["stages.0.0.mbconv.expand.conv.weight"] == 0.5**5
    assert scale["stages.3.0.grid_attn.attn.qkv.weight"] == 0.5**1
    assert scale["head.weight"] == 1.0


def test_data_config_follows_the_variant_and_the_built_size():
    resolve = timm.data.resolve_model_data_config
    nano = resolve(create_model("maxvit_nano"))
    assert nano == dict(
        input_size=(3, 64, 64),
        interpolation="bilinear",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_pct=1.0,
        crop_mode="center",
    )
    assert resolve(create_model("maxvit_nano", img_size=32))["input_size"] == (3, 32, 32)
    with torch.device("meta"):
        ours = create_model("maxvit_tiny")
        theirs = timm.create_model("maxvit_tiny_tf_224")
    assert resolve(ours) == resolve(theirs)
    assert resolve(ours)["crop_pct"] == 0.95 and resolve(ours)["interpolation"] == "bicubic"
    assert ours.pretrained_cfg["pool_size"] == (7, 7)
    assert ours.pretrained_cfg["hf_hub_id"] == "timm/maxvit_tiny_tf_224.in1k"


def test_num_classes_zero_gives_the_pooled_features():
    torch.manual_seed(0)
    model = create_model("maxvit_nano", num_classes=0).eval()
    assert model.num_classes == 0 and isinstance(model.head, torch.nn.Identity)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 192)
        torch.testing.assert_close(out, model.forward_features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def nano():
    return create_model("maxvit_nano", num_classes=3)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: m.forward_intermediates(X, output_fmt="NLC"), "output_fmt must be NCHW or NHWC"),
        (lambda m: m.forward_intermediates(X, indices=6), "indices=6 asks for the last 6 of 5"),
        (lambda m: m.forward_intermediates(X, indices=0), "indices=0 asks for the last 0 of 5"),
        (lambda m: m.forward_intermediates(X, indices=[-6, 5]), r"\[-6, 5\] are outside 0..4"),
        (lambda m: m.forward_intermediates(X, indices=[]), "selects no feature map"),
        (lambda m: m.prune_intermediate_layers([9]), r"feature indices \[9\]"),
        (lambda m: m.reset_classifier(3, "max"), "global_pool must be 'avg' or ''"),
        (lambda m: m.reset_classifier(-1), "num_classes must be 0"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(nano, call, message):
    with pytest.raises(UserError, match=message) as info:
        call(nano)
    assert "\n" not in str(info.value)
    assert nano.num_classes == 3 and len(nano.stages) == 4  # nothing changed
