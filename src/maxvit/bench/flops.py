"""FLOP counting with ``torch.utils.flop_counter``, corrected where the stock counter is wrong.

Two faults of the stock counter (torch 2.x) matter for MaxViT and ViT:

1. Convolution backward, weight gradient: the stock formula treats the weight gradient as a
   dense convolution of input and output channels and so counts a grouped convolution
   ``groups`` times too often. A depthwise 3x3 (groups = channels) is overcounted by its
   channel count; MaxViT looked like 6.65x forward per training step instead of about 3x.
   Here the weight-gradient term is divided by ``groups``.
2. ``scaled_dot_product_attention`` on CPU dispatches to
   ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward), which the stock
   counter has no formula for, so all attention in a timm ViT counted as zero. Here both are
   counted.

Convention (the usual one): 2 FLOPs per multiply-add of matmuls and convolutions; norms,
activations, softmax and bias adds are not counted. Attention backward is counted as the four
matmuls of its gradient (2x forward), without the score recomputation that fused kernels do,
so CPU, CUDA, fused and explicit (``q @ k.T``) attention all give the same count; the stock
CUDA formulas (which include recomputation) are overridden to match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_flop_count

aten = torch.ops.aten


def conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """``aten.convolution_backward`` with the weight gradient counted once per group."""

    def t(shape: list[int]) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:  # input gradient: a transposed convolution with the same weight
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:  # weight gradient: input correlated with grad_out, per group
        if transposed:
            dense = conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]), False)
        else:
            dense = conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]), False)
        flops += dense // groups
    return flops


def attention_forward_flops(
    query_shape: list[int], key_shape: list[int], value_shape: list[int], *args: Any, **kwargs: Any
) -> int:
    """Fused attention forward: ``q @ k^T`` and ``p @ v``."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def attention_backward_flops(
    grad_out_shape: list[int],
    query_shape: list[int],
    key_shape: list[int],
    value_shape: list[int],
    *args: Any,
    **kwargs: Any,
) -> int:
    """Fused attention backward: the four gradient matmuls (dP, dV, dQ, dK) = 2x forward."""
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


def corrected_mapping() -> dict[Any, Callable[..., int]]:
    """Formulas to pass as ``FlopCounterMode(custom_mapping=...)`` (shape-level functions)."""
    return {
        aten.convolution_backward: conv_backward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu: attention_forward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward_flops,
        aten._scaled_dot_product_flash_attention_backward: attention_backward_flops,
        aten._scaled_dot_product_efficient_attention_backward: attention_backward_flops,
        aten._scaled_dot_product_cudnn_attention_backward: attention_backward_flops,
    }


def flop_counter(display: bool = False) -> FlopCounterMode:
    """A ``FlopCounterMode`` with the corrections above."""
    return FlopCounterMode(display=display, custom_mapping=corrected_mapping())


# Ops whose FLOPs are attention scores and their use (bmm: batched matmuls, which linear layers
# do not use; the SDPA family: fused attention).
_ATTENTION_OP_PREFIXES = (
    "aten.bmm",
    "aten.baddbmm",
    "aten._scaled_dot_product",
    "aten._flash_a",
    "aten._efficient_a",
)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one model on one input batch (totals for the batch, not per image)."""

    # Forward pass (inference) FLOPs.
    forward: int
    # Forward + backward of a training step (the optimizer's elementwise update not counted).
    train: int
    # Part of `forward` in attention matmuls (bmm and fused attention ops).
    forward_attention: int


def _attention_part(counter: FlopCounterMode) -> int:
    totals = counter.get_flop_counts().get("Global", {})
    return sum(v for op, v in totals.items() if str(op).startswith(_ATTENTION_OP_PREFIXES))


def count_flops(model: nn.Module, x: torch.Tensor, train: bool = True) -> FlopCount:
    """Count the forward and (when ``train``) forward+backward FLOPs of ``model`` on ``x``.

    The model is run in eval mode (deterministic; BatchNorm with batch 1 works) with its
    parameters requiring gradients, so the backward pass has the same matmuls as in training.
    Its train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with flop_counter() as counter, torch.no_grad():
            model(x)
        forward = counter.get_total_flops()
        attention = _attention_part(counter)
        train_flops = 0
        if train:
            with flop_counter() as counter:
                out = model(x)
                out.float().logsumexp(dim=-1).sum().backward()
            train_flops = counter.get_total_flops()
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return FlopCount(forward=forward, train=train_flops, forward_attention=attention)
