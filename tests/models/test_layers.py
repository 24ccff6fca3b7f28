"""Partition helpers, relative-position bias and the two attention paths."""

from __future__ import annotations

import pytest
import torch

from maxvit.models.layers import (
    Attention,
    SamePad,
    grid_partition,
    grid_reverse,
    window_partition,
    window_reverse,
)


@pytest.mark.parametrize(
    "partition,reverse", [(window_partition, window_reverse), (grid_partition, grid_reverse)]
)
def test_partition_round_trip(partition, reverse):
    x = torch.randn(2, 12, 8, 5)
    groups = partition(x, 4)
    assert groups.shape == (2 * 3 * 2, 16, 5)
    assert torch.equal(reverse(groups, 4, 12, 8), x)


def _coords(h: int, w: int) -> torch.Tensor:
    """(1, H, W, 2) map whose token at (y, x) holds its own coordinates."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([ys, xs], -1)[None].float()


def test_window_groups_are_local_blocks():
    groups = window_partition(_coords(8, 8), 4)  # 4 windows of 16 tokens
    first = groups[0].long()
    assert first[:, 0].tolist() == [y for y in range(4) for _ in range(4)]
    assert first[:, 1].tolist() == list(range(4)) * 4
    second = groups[1].long()  # the window to the right
    assert second[:, 1].min() == 4 and second[:, 0].max() == 3


def test_grid_tokens_are_spread_by_the_stride():
    h = w = 12
    p = 4
    stride = h // p
    groups = grid_partition(_coords(h, w), p)
    assert groups.shape == (stride * stride, p * p, 2)
    for g, tokens in enumerate(groups.long()):
        oy, ox = divmod(g, stride)
        expected = [(oy + stride * a, ox + stride * b) for a in range(p) for b in range(p)]
        assert [tuple(t) for t in tokens.tolist()] == expected
    # every token lands in exactly one grid group
    assert groups.reshape(-1, 2).unique(dim=0).shape[0] == h * w


def test_relative_position_bias_indexing():
    attn = Attention(dim=64, head_dim=32, p=3)
    with torch.no_grad():
        attn.rel_pos.table.copy_(torch.arange(2 * 25).float().view(2, 5, 5))
    bias = attn.rel_pos()
    assert bias.shape == (2, 9, 9)
    # query (0,0) -> key (2,1): offset (+2,+1) -> table[h, 2+2, 1+2]
    assert bias[1, 0, 2 * 3 + 1] == 25 + 4 * 5 + 3
    # equal offsets share an entry
    assert bias[0, 0, 4] == bias[0, 4, 8]


def test_sdpa_equals_explicit_attention_forward_and_backward():
    torch.manual_seed(0)
    a = Attention(dim=64, head_dim=16, p=4, impl="sdpa")
    b = Attention(dim=64, head_dim=16, p=4, impl="explicit")
    torch.nn.init.normal_(a.rel_pos.table, std=1.0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 16, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ya, yb = a(x), b(x2)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.rel_pos.table.grad, b.rel_pos.table.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 1, 2, 2), (3, 5, 6, 6)])
def test_same_pad_equals_zero_pad_forward_and_backward(shape, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ours, ref = SamePad(3)(x), torch.nn.functional.pad(x, (0, 1, 0, 1))
    assert torch.equal(ours, ref)
    assert ours.is_contiguous(memory_format=torch.channels_last) == channels_last or shape[1] == 1
    grad = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    (g_ref,) = torch.autograd.grad(ref, x, grad)
    assert torch.equal(g_ours, g_ref)
