"""The fused inference copy: same logits as the eager model, original untouched, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maxvit.models import create_model
from maxvit.models.fuse import FusedConv2d, FusedLinear, fuse_for_inference, inference_copy
from maxvit.models.layers import Attention


def _trained_like(name: str, **kwargs) -> nn.Module:
    """A model whose BatchNorm statistics and affine parameters are far from the identity."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize(
    "name,size,kwargs",
    [
        ("maxvit_nano", 64, {}),
        ("maxvit_tiny", 224, {"depths": (1, 1, 1, 1)}),
        ("maxvit_nano", 64, {"attn_impl": "sdpa"}),
    ],
    ids=["seed-style", "paper-style", "sdpa"],
)
@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_copy_gives_the_same_logits(name, size, kwargs, channels_last):
    model = _trained_like(name, **kwargs)
    x = torch.randn(2, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fused = fuse_for_inference(model)
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():  # the oneDNN post-op kernels (CPU float32)
        fast = fused(x)
    with torch.enable_grad():  # grad mode on: the portable path (folded weights, F.gelu)
        portable = fused(x)
    assert not portable.requires_grad
    assert (fast - expected).abs().max() <= 1e-4
    assert (portable - expected).abs().max() <= 1e-4


def test_fusion_removes_every_batchnorm_folds_the_query_scale_and_leaves_the_original_alone():
    model = _trained_like("maxvit_nano")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, FusedConv2d) and m.gelu for m in fused.modules())
    assert any(isinstance(m, FusedLinear) and m.gelu for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    assert all(m.scale == 1.0 for m in fused.modules() if isinstance(m, Attention))
    assert all(m.scale == 32**-0.5 for m in model.modules() if isinstance(m, Attention))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_stride_two_same_padding_is_folded_into_the_kernel():
    fused = fuse_for_inference(_trained_like("maxvit_tiny", depths=(1, 1, 1, 1)))
    dw = fused.stages[0][0].mbconv.depthwise
    assert isinstance(dw, FusedConv2d)
    assert dw.weight.shape[-2:] == (4, 4) and dw.padding == (1, 1)
    assert torch.all(dw.weight[:, :, 0, :] == 0) and torch.all(dw.weight[:, :, :, 0] == 0)


def test_only_maxvit_is_fused():
    vit = create_model("vit_nano")
    assert inference_copy(vit) is vit
    with pytest.raises(TypeError, match="MaxVit"):
        fuse_for_inference(vit)


def test_the_private_onednn_ops_the_copy_calls_still_exist():
    from maxvit.models.fuse import ONEDNN_OPS

    missing = [op for op in ONEDNN_OPS if not hasattr(torch.ops.mkldnn, op)]
    assert not missing, (
        f"torch {torch.__version__} moved torch.ops.mkldnn.{missing}: update fuse.py"
    )
