"""Building blocks of MaxViT: partition helpers, relative-position bias, attention, MBConv.

Vocabulary used throughout: a *stage* is a sequence of *blocks*; a block is
MBConv -> block attention -> grid attention. Convolutions run on NCHW tensors,
attention and MLP on NHWC tensors (see `MaxVitBlock.forward` for the one switch).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

# ---------------------------------------------------------------------------------------------
# Partition helpers: pure view/permute functions. Window and grid differ only in factor order:
# the window splits each side as (count, size), the grid as (size, count).
# ---------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, p: int) -> torch.Tensor:
    """Split a map into non-overlapping p x p windows of neighbouring tokens.

    Input (B, H, W, C) with H and W divisible by p; output (B * H/p * W/p, p*p, C).
    """
    b, h, w, c = x.shape
    x = x.view(b, h // p, p, w // p, p, c)  # (B, nH, p, nW, p, C): split as (count, size)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, nH, nW, p, p, C)
    return x.reshape(-1, p * p, c)  # (B*nH*nW, p*p, C)


def window_reverse(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * H/p * W/p, p*p, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.view(-1, h // p, w // p, p, p, c)  # (B, nH, nW, p, p, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, nH, p, nW, p, C)
    return x.reshape(-1, h, w, c)  # (B, H, W, C)


def grid_partition(x: torch.Tensor, p: int) -> torch.Tensor:
    """Split a map into p x p grids of tokens spread over the whole map with stride H/p.

    Group (i, j) holds the tokens at (i + H/p * a, j + W/p * b) for a, b in range(p).
    Input (B, H, W, C) with H and W divisible by p; output (B * H/p * W/p, p*p, C).
    """
    b, h, w, c = x.shape
    x = x.view(b, p, h // p, p, w // p, c)  # (B, p, nH, p, nW, C): split as (size, count)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, nH, nW, p, p, C)
    return x.reshape(-1, p * p, c)  # (B*nH*nW, p*p, C)


def grid_reverse(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `grid_partition`: (B * H/p * W/p, p*p, C) -> (B, H, W, C)."""
    c = x.shape[-1]
    x = x.view(-1, h // p, w // p, p, p, c)  # (B, nH, nW, p, p, C)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, p, nH, p, nW, C)
    return x.reshape(-1, h, w, c)  # (B, H, W, C)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------


class RelativePositionBias(nn.Module):
    """Learned bias per head for every relative offset inside a p x p group.

    The table holds (2p-1) x (2p-1) entries per head (the TF/timm ``bias_tf`` layout), indexed
    by (key - query + p - 1) along each axis. `forward()` returns the (heads, p*p, p*p) bias that
    SDPA takes as its additive ``attn_mask``.
    """

    def __init__(self, num_heads: int, p: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_heads, 2 * p - 1, 2 * p - 1))
        coords = torch.stack(
            torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        ).flatten(1)  # (2, p*p): (y, x) of each token
        rel = coords[:, None, :] - coords[:, :, None] + (p - 1)  # (2, N, N): key - query, >= 0
        index = rel[0] * (2 * p - 1) + rel[1]  # (N, N) flat index into the table
        self.register_buffer("index", index, persistent=False)

    def forward(self) -> torch.Tensor:
        heads = self.table.shape[0]
        return self.table.view(heads, -1)[:, self.index]  # (heads, N, N)


class Attention(nn.Module):
    """Multi-head self-attention over groups of tokens, with a relative-position bias.

    Input and output (G, N, C): G groups (windows or grids) of N = p*p tokens. ``impl``:
    "sdpa" uses `F.scaled_dot_product_attention` with the bias as ``attn_mask``; "explicit"
    computes softmax(q k^T * scale + bias) v by hand; "auto" picks SDPA on CUDA and explicit
    on CPU, where SDPA falls back to its math path once the mask needs a gradient and is
    slower even in inference (`maxvit bench kernels --cases attention`). Both paths are tested
    equal.
    """

    def __init__(self, dim: int, head_dim: int, p: int, impl: str = "auto") -> None:
        super().__init__()
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim**-0.5  # query scale; `fuse_for_inference` folds it into qkv (1.0)
        self.impl = impl
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rel_pos = RelativePositionBias(self.num_heads, p)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, n, c = x.shape
        qkv = self.qkv(x).view(g, n, 3, self.num_heads, self.head_dim)  # (G, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (G, h, N, d)
        bias = self.rel_pos()  # (h, N, N)
        use_sdpa = self.impl == "sdpa" or (self.impl == "auto" and x.is_cuda)
        if use_sdpa:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale
            )
        else:
            if self.scale != 1.0:
                q = q * self.scale
            attn = q @ k.transpose(-2, -1)  # (G, h, N, N)
            attn += bias  # in place: the product is a fresh tensor that backward does not need
            x = attn.softmax(dim=-1) @ v  # (G, h, N, d)
        x = x.transpose(1, 2).reshape(g, n, c)  # (G, N, h*d)
        return self.proj(x)


class PartitionAttention(nn.Module):
    """Pre-norm transformer layer over a partition of an NHWC map: attention + MLP.

    ``partition`` is "block" (local p x p windows) or "grid" (a p x p grid spread over the
    whole map); everything else is shared. Input and output (B, H, W, C).
    """

    def __init__(
        self,
        dim: int,
        partition: str,
        p: int,
        head_dim: int,
        expansion: int,
        act_layer: Callable[[], nn.Module],
        ln_eps: float,
        drop_path: float,
        attn_impl: str,
    ) -> None:
        super().__init__()
        self.p = p
        self.partition, self.reverse = {
            "block": (window_partition, window_reverse),
            "grid": (grid_partition, grid_reverse),
        }[partition]
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, head_dim, p, attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(dim, expansion * dim),
                act=act_layer(),
                fc2=nn.Linear(expansion * dim, dim),
            )
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        y = self.attn(self.partition(self.norm1(x), self.p))  # (G, p*p, C)
        x = x + self.drop_path(self.reverse(y, self.p, h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------


class _SamePadFn(torch.autograd.Function):
    """Zero-pad the bottom and right edges by ``extra``; the backward pass returns a view."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, extra: int) -> torch.Tensor:
        b, c, h, w = x.shape
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty(
            (b, c, h + extra, w + extra), dtype=x.dtype, device=x.device, memory_format=fmt
        )
        out[:, :, h:].zero_()  # bottom rows
        out[:, :, :h, w:].zero_()  # right columns
        out[:, :, :h, :w].copy_(x)
        ctx.size = (h, w)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, w = ctx.size
        return grad[:, :, :h, :w], None  # the border was constant: drop its gradient


class SamePad(nn.Module):
    """TF/Keras "same" padding of a k x k stride-2 conv on an even map: k-2 zero rows at the
    bottom and k-2 zero columns on the right. (B, C, H, W) -> (B, C, H+k-2, W+k-2).

    Equal to ``nn.ZeroPad2d((0, k-2, 0, k-2))`` but cheaper: only the border is zeroed (not
    the whole buffer before the copy), and the backward pass returns a view of the incoming
    gradient instead of copying it out (`maxvit bench kernels --cases same-pad`).
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.extra = kernel - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # under torch.compile a plain pad, which inductor fuses into its neighbours; the
            # custom autograd function stops inductor's freezing passes (docs/benchmarks.md)
            return F.pad(x, (0, self.extra, 0, self.extra))
        return _SamePadFn.apply(x, self.extra)

    def extra_repr(self) -> str:
        return f"bottom=right={self.extra}"


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    norm: nn.Module | None = None,
    act: nn.Module | None = None,
) -> nn.Sequential:
    """Conv with TF/Keras "same" padding, then optional norm and activation.

    For stride 2 on an even map "same" pads only the bottom/right edge (asymmetric), unlike
    PyTorch's symmetric padding; the model checks at construction that strided maps are even.
    """
    layers: dict[str, nn.Module] = {}
    if stride == 2 and kernel > 1:
        layers["pad"] = SamePad(kernel)
        padding = 0
    else:
        padding = kernel // 2
    layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias)
    if norm is not None:
        layers["norm"] = norm
    if act is not None:
        layers["act"] = act
    return nn.Sequential(OrderedDict(layers))


class SqueezeExcite(nn.Module):
    """Channel gating: global average pool -> Linear -> act -> Linear -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int, act: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Linear(channels, reduced)
        self.act = act
        self.expand = nn.Linear(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3))  # (B, C)
        s = self.expand(self.act(self.reduce(s))).sigmoid()
        return x * s[:, :, None, None]


class MBConv(nn.Module):
    """Inverted-bottleneck conv: 1x1 expand -> depthwise 3x3 -> SE -> 1x1 project, plus shortcut.

    ``style`` picks one of two recorded designs (NCHW in and out):
      - "seed" (Keras reproduction): no pre-norm; hidden = expansion * cin; BN after the
        projection; SE reduces to cin with GELU; the shortcut is always (avg pool 2x2 when
        downsampling) -> 1x1 conv without bias.
      - "paper" (official MaxViT / timm ``*_tf``): BN pre-norm; hidden = expansion * cout;
        projection with bias and no norm; SE reduces to cout/4 with SiLU; the shortcut is
        identity, or avg pool (-> 1x1 conv with bias if channels change) when downsampling.
    The forward pass is the same for both.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        style: str,
        expansion: int,
        act_layer: Callable[[], nn.Module],
        bn_eps: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        paper = style == "paper"
        hidden = expansion * (cout if paper else cin)

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, eps=bn_eps)

        pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        if paper and cin == cout:
            self.shortcut = pool
        else:
            self.shortcut = nn.Sequential(
                OrderedDict(pool=pool, conv=nn.Conv2d(cin, cout, 1, bias=paper))
            )
        self.pre_norm = bn(cin) if paper else nn.Identity()
        self.expand = conv_bn_act(cin, hidden, 1, norm=bn(hidden), act=act_layer())
        self.depthwise = conv_bn_act(
            hidden, hidden, 3, stride=stride, groups=hidden, norm=bn(hidden), act=act_layer()
        )
        se_act = nn.SiLU() if paper else act_layer()
        self.se = SqueezeExcite(hidden, cout // 4 if paper else cin, se_act)
        self.project = conv_bn_act(hidden, cout, 1, bias=paper, norm=None if paper else bn(cout))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.depthwise(self.expand(self.pre_norm(x)))
        x = self.project(self.se(x))
        return shortcut + self.drop_path(x)


def init_weights(module: nn.Module) -> None:
    """Init as the public MaxViT implementations: truncated normal (std 0.02) for linear layers
    and relative-position tables, fan-out normal for convolutions, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, RelativePositionBias):
        nn.init.trunc_normal_(module.table, std=0.02, a=-0.04, b=0.04)
