"""Building blocks of MaxViT: partition helpers, relative-position bias, attention, stochastic
depth, convolutions (stem, MBConv).

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
from torch import nn

from maxvit.models.config import MaxVitConfig

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
        x = attend(q, k, v, self.rel_pos(), self.scale, self.impl)  # (G, h, N, d)
        x = x.transpose(1, 2).reshape(g, n, c)  # (G, N, h*d)
        return self.proj(x)


@torch.fx.wrap  # one opaque call in torch.fx graphs: the path depends on the tensors' device
def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float, impl: str
) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v for (G, h, N, d) q, k, v and an (h, N, N) bias, by SDPA
    or explicitly (see `Attention`)."""
    if impl == "sdpa" or (impl == "auto" and q.is_cuda):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
    if scale != 1.0:
        q = q * scale
    attn = q @ k.transpose(-2, -1)  # (G, h, N, N)
    attn += bias  # in place: the product is a fresh tensor that backward does not need
    return attn.softmax(dim=-1) @ v


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
# Stochastic depth (shared by MBConv and the attention layers)
# ---------------------------------------------------------------------------------------------


# one call in torch.fx graphs: traced as ops, its in-place scaling has no user, and
# torchvision's feature extractor removes it as dead code
@torch.fx.wrap
def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training, zero a sample's whole residual branch with probability p
    and scale the kept ones by 1 / (1 - p); the identity in eval. Any shape, batch first."""
    if not training or p == 0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep.div_(1 - p)


class DropPath(nn.Module):
    """`drop_path` with probability `p` as a module (the mode is the module's)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------


class Gelu(nn.GELU):
    """`nn.GELU`; under torch.compile its tanh approximation is written as the equal
    ``x * sigmoid(2 z)`` (since ``0.5 (1 + tanh z) = sigmoid(2 z)``, ``z = sqrt(2/pi) (x +
    0.044715 x^3)``). Inductor then computes it in its own vectorised kernel instead of fusing it
    into the convolution before it as oneDNN's tanh-GELU post-op, which made those convolutions
    about 2x slower on an AVX2 CPU (docs/benchmarks.md, "Why compiled MaxViT-T trailed")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "tanh" and torch.compiler.is_compiling():
            return x * torch.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
        return super().forward(x)


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


@torch.fx.wrap  # one opaque call in torch.fx graphs, which cannot trace into an autograd.Function
def same_pad(x: torch.Tensor, extra: int) -> torch.Tensor:
    """`_SamePadFn`: zero-pad the bottom and right edges of an NCHW map by ``extra``."""
    return _SamePadFn.apply(x, extra)


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
        return same_pad(x, self.extra)

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


class Stem(nn.Module):
    """conv 3x3/2 -> (BatchNorm) -> GELU -> conv 3x3 (/2 for a stride-4 stem), with or without
    biases, as `MaxVitConfig` says (``stem_stride``, ``stem_norm``, ``conv_bias``). NCHW."""

    def __init__(self, cfg: MaxVitConfig) -> None:
        super().__init__()
        c = cfg.stem_channels
        self.conv1 = conv_bn_act(
            3,
            c,
            3,
            stride=2,
            bias=cfg.conv_bias,
            norm=nn.BatchNorm2d(c, eps=cfg.bn_eps) if cfg.stem_norm else None,
            act=Gelu(approximate=cfg.gelu),
        )
        self.conv2 = conv_bn_act(c, c, 3, stride=cfg.stem_stride // 2, bias=cfg.conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


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

    NCHW in and out. The `MaxVitConfig` fields ``pre_norm``, ``expand_output``, ``se_ratio``,
    ``se_act``, ``project_norm``, ``shortcut`` and ``conv_bias`` pick between the seed's and the
    paper's versions of each part (see there); the forward pass is the same for all.
    """

    def __init__(
        self, cin: int, cout: int, stride: int, cfg: MaxVitConfig, drop_path: float
    ) -> None:
        super().__init__()
        hidden = cfg.expansion * (cout if cfg.expand_output else cin)

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, eps=cfg.bn_eps)

        def gelu() -> nn.GELU:
            return Gelu(approximate=cfg.gelu)  # a new module per use

        pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        if cfg.shortcut == "identity" and cin == cout:
            self.shortcut = pool
        else:
            self.shortcut = nn.Sequential(
                OrderedDict(pool=pool, conv=nn.Conv2d(cin, cout, 1, bias=cfg.conv_bias))
            )
        self.pre_norm = bn(cin) if cfg.pre_norm else nn.Identity()
        self.expand = conv_bn_act(cin, hidden, 1, norm=bn(hidden), act=gelu())
        self.depthwise = conv_bn_act(
            hidden, hidden, 3, stride=stride, groups=hidden, norm=bn(hidden), act=gelu()
        )
        se_width = int(cfg.se_ratio * (cout if cfg.expand_output else hidden))
        self.se = SqueezeExcite(hidden, se_width, nn.SiLU() if cfg.se_act == "silu" else gelu())
        self.project = conv_bn_act(
            hidden, cout, 1, bias=cfg.conv_bias, norm=bn(cout) if cfg.project_norm else None
        )
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
