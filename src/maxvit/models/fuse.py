"""An inference-only copy of a MaxViT: BatchNorm folded into convolutions, GELU fused into them.

`fuse_for_inference(model)` returns a new module that computes the same logits as
``model.eval()`` (to float rounding; tested <= 1e-4) with fewer passes over memory:

  - every BatchNorm is folded into the convolution next to it: the MBConv pre-norm into the
    1x1 expansion that follows it (exact for a 1x1 conv without padding), the others into the
    conv before them;
  - GELU runs inside the convolution or linear layer before it (oneDNN post-ops, CPU float32),
    for the MBConv expansion and depthwise convs, the stem and the MLP's first linear layer;
  - the stride-2 convolutions' TF "same" padding becomes part of the kernel (no padded copy);
  - the attention and MLP linear layers add their bias inside the matrix product;
  - the attention's query scale 1/sqrt(head_dim) is folded into the qkv projection.

On a 2-core CPU the element-wise passes (GELU, BatchNorm) are memory bound; the copy ran
MaxViT-T inference 1.4x faster than the eager model (`maxvit bench model` with and without
``--no-fuse-inference``). Other devices and dtypes get the folded weights with an unfused
activation.

The copy has no trainable parameters and no autograd: use it under ``torch.inference_mode()``
(or ``no_grad``), as ``maxvit eval`` and ``maxvit predict`` do. The original model is untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from maxvit.models.layers import MBConv, PartitionAttention
from maxvit.models.model import MaxVit

# oneDNN's fused "pointwise" kernels have no public PyTorch API: ``torch.ops.mkldnn.
# _convolution_pointwise`` and ``_linear_pointwise`` are what inductor's own CPU fusions call.
# tests/models/test_fuse.py checks they exist and fails naming them if a release moves them.
ONEDNN_OPS = ("_convolution_pointwise", "_linear_pointwise")


def _onednn_ok(x: torch.Tensor) -> bool:
    """oneDNN post-op kernels: CPU float32 tensors that need no gradient, outside autocast
    (under it the plain ops run, which autocast casts)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
    )


class FusedConv2d(nn.Module):
    """Conv2d with folded BatchNorm and an optional fused GELU. Input and output NCHW."""

    def __init__(self, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, gelu: str | None):
        super().__init__()
        self.register_buffer(
            "weight", weight.detach().contiguous(memory_format=torch.channels_last)
        )
        self.register_buffer("bias", bias.detach().contiguous())
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.gelu = gelu  # GELU approximation ("none" or "tanh"), or None for no activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_ok(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x,
                self.weight,
                self.bias,
                list(self.padding),
                list(self.stride),
                [1, 1],
                self.groups,
                "gelu" if self.gelu else "none",
                [],
                self.gelu or "",
            )
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        return F.gelu(y, approximate=self.gelu) if self.gelu else y

    def extra_repr(self) -> str:
        out, cin = self.weight.shape[:2]
        k = tuple(self.weight.shape[2:])
        return f"{cin * self.groups}, {out}, kernel={k}, stride={self.stride}, gelu={self.gelu}"


class FusedLinear(nn.Module):
    """Linear with an optional fused GELU, as one oneDNN call on the CPU (which also adds the
    bias inside the matrix product instead of copying it out first). (..., in) -> (..., out)."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach())  # the copy's own tensors
        self.register_buffer("bias", linear.bias.detach())
        self.gelu = gelu  # GELU approximation ("none" or "tanh"), or None for no activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_ok(x):
            attr = "gelu" if self.gelu else "none"
            # oneDNN runs a 2-D product much faster than the same product given as 3-D or 4-D.
            y = torch.ops.mkldnn._linear_pointwise(
                x.reshape(-1, x.shape[-1]), self.weight, self.bias, attr, [], self.gelu or ""
            )
            return y.view(*x.shape[:-1], y.shape[-1])
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y, approximate=self.gelu) if self.gelu else y

    def extra_repr(self) -> str:
        out, cin = self.weight.shape
        return f"{cin}, {out}, gelu={self.gelu}"


def _bn_scale_shift(bn: nn.Module | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) with bn(x) = scale * x + shift in eval mode; for anything
    that is not a BatchNorm (None, Identity), the identity for ``like``'s channels."""
    if not isinstance(bn, nn.BatchNorm2d):
        return torch.ones_like(like), torch.zeros_like(like)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold(
    conv: nn.Conv2d,
    post_norm: nn.Module | None,
    act: nn.Module | None,
    pre_norm: nn.Module | None = None,
) -> FusedConv2d:
    """pre_norm -> conv -> post_norm -> act as one FusedConv2d (pre_norm: 1x1 convs only)."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else w.new_zeros(w.shape[0])
    if isinstance(pre_norm, nn.BatchNorm2d):
        if conv.kernel_size != (1, 1) or conv.groups != 1:
            raise ValueError("an input-side BatchNorm folds only into a 1x1 convolution")
        s, t = _bn_scale_shift(pre_norm, w.new_empty(w.shape[1]))
        b = b + (w[:, :, 0, 0] @ t)  # W (s*x + t) + b = (W s) x + (W t + b)
        w = w * s[None, :, None, None]
    s, t = _bn_scale_shift(post_norm, b)
    w, b = w * s[:, None, None, None], b * s + t
    gelu = act.approximate if isinstance(act, nn.GELU) else None
    if act is not None and gelu is None:
        raise ValueError(f"cannot fuse activation {type(act).__name__}")
    return FusedConv2d(conv, w, b, gelu)


def _fuse_conv_bn_act(seq: nn.Sequential, pre_norm: nn.Module | None = None) -> FusedConv2d:
    """A `conv_bn_act` Sequential (pad?, conv, norm?, act?) -> one FusedConv2d."""
    layers = dict(seq.named_children())
    fused = _fold(layers["conv"], layers.get("norm"), layers.get("act"), pre_norm)
    if "pad" in layers:
        # TF "same" padding of a 3x3 stride-2 conv (zeros after the map) without a padded copy:
        # a 4x4 kernel whose first row and column are zero, with symmetric padding 1, reads the
        # same inputs (the zero row/column faces the top/left padding). Faster than pad + 3x3
        # in inference (maxvit bench kernels --cases strided-inference, docs/benchmarks.md);
        # training keeps the 3x3, whose backward pass is the faster one.
        if fused.weight.shape[-2:] != (3, 3) or fused.stride != (2, 2):
            raise ValueError("only 3x3 stride-2 'same' convolutions are folded")
        w = F.pad(fused.weight, (1, 0, 1, 0))  # (O, I, 4, 4), zero first row and column
        fused.weight = w.contiguous(memory_format=torch.channels_last)
        fused.padding = (1, 1)
    return fused


@torch.no_grad()
def fuse_for_inference(model: MaxVit) -> MaxVit:
    """A copy of ``model`` for inference only, with BatchNorm folded and GELU fused.

    Raises TypeError for models that are not this project's `MaxVit`.
    """
    if not isinstance(model, MaxVit):
        raise TypeError(f"fuse_for_inference takes a MaxVit, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    for name in ("conv1", "conv2"):
        setattr(fused.stem, name, _fuse_conv_bn_act(getattr(fused.stem, name)))
    for module in fused.modules():
        if isinstance(module, MBConv):
            module.expand = _fuse_conv_bn_act(module.expand, pre_norm=module.pre_norm)
            module.pre_norm = nn.Identity()
            module.depthwise = _fuse_conv_bn_act(module.depthwise)
            module.project = _fuse_conv_bn_act(module.project)
        elif isinstance(module, PartitionAttention):
            attn, mlp = module.attn, module.mlp
            c = attn.qkv.in_features  # the query rows come first: fold the scale into them
            attn.qkv.weight[:c] *= attn.scale
            attn.qkv.bias[:c] *= attn.scale
            attn.scale = 1.0
            attn.qkv, attn.proj = FusedLinear(attn.qkv), FusedLinear(attn.proj)
            gelu = mlp.act.approximate
            module.mlp = nn.Sequential(FusedLinear(mlp.fc1, gelu), FusedLinear(mlp.fc2))
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def inference_copy(model: nn.Module) -> nn.Module:
    """`fuse_for_inference(model)` for this project's MaxViT; any other model as it is."""
    return fuse_for_inference(model) if isinstance(model, MaxVit) else model
