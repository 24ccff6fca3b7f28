"""MaxViT: Multi-Axis Vision Transformer (Tu et al., ECCV 2022), https://arxiv.org/abs/2204.01697

One model class for two recorded designs, chosen by `MaxVitConfig.style`:
  - "seed": the Keras reproduction this project reproduces (`maxvit_seed`, 33,067,056
    parameters counted as Keras counts them), layer by layer as in
    shared/reference/seed_architecture.csv;
  - "paper": the official design, equal to timm's ``maxvit_*_tf_224`` (tested by converting
    weights and comparing logits).

Deliberate deviations and decisions (keep this list current):
  1. Padding is TF/Keras "same" for both styles: stride-2 convs pad only bottom/right. The seed
     was written in Keras and the official code in TF, so this is what both computed.
  2. The seed stem has a GELU between its two convs (an activation adds no parameters and the
     recorded table cannot show it; a plain linear stem would be unusual).
  3. GELU is exact (erf) for the seed, as Keras' default, and tanh-approximated for the paper
     style, as the official weights were trained.
  4. Window and grid size are one `partition_size`, clamped per stage to the feature map when
     the map is smaller (one window then covers the whole map); a map not divisible by it is
     rejected at construction, naming the stage.
  5. Attention on CPU uses the explicit softmax path by default (`attn_impl="auto"`), because
     SDPA with a learned bias mask falls back to a slower math path there; CUDA uses SDPA.
     Both are tested equal.
  6. Stochastic depth (`drop_path`) is one probability per block, rising linearly from 0 to
     `MaxVitConfig.drop_path` over all blocks; the block's MBConv, block attention and grid
     attention share it (as timm does). The seed preset uses 0.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from maxvit.errors import UserError
from maxvit.models.layers import MBConv, PartitionAttention, conv_bn_act, init_weights


@dataclass(frozen=True)
class MaxVitConfig:
    depths: tuple[int, ...]  # blocks per stage
    channels: tuple[int, ...]  # channels per stage
    stem_channels: int  # channels of the stem convs
    style: str = "paper"  # "seed" (Keras reproduction) or "paper" (official/timm); see MBConv
    head_dim: int = 32  # channels per attention head
    partition_size: int = 7  # window and grid side p (tokens); clamped to small maps
    expansion: int = 4  # hidden ratio of MBConv and of the attention MLP
    gelu: str = "tanh"  # GELU approximation: "none" (exact) or "tanh"
    bn_eps: float = 1e-3  # BatchNorm epsilon (Keras/TF default)
    ln_eps: float = 1e-5  # LayerNorm epsilon
    drop_path: float = 0.0  # stochastic depth probability of the last block
    attn_impl: str = "auto"  # "auto" (SDPA on CUDA, explicit on CPU), "sdpa" or "explicit"

    def stage_geometry(self, img_size: int) -> list[tuple[int, int]]:
        """(map side, partition side) of each stage at `img_size`; raises UserError if invalid."""
        if self.style not in ("seed", "paper"):
            raise UserError(f"style must be 'seed' or 'paper', got {self.style!r}")
        if self.attn_impl not in ("auto", "sdpa", "explicit"):
            raise UserError(f"attn_impl must be auto, sdpa or explicit, got {self.attn_impl!r}")
        # seed: stem /4, stage 1 keeps its size; paper: stem /2, every stage halves.
        size, strides = img_size, self.stage_strides()
        for _ in range(2 if self.style == "seed" else 1):
            size = _halve(size, "stem", img_size)
        geometry = []
        for i, stride in enumerate(strides):
            if stride == 2:
                size = _halve(size, f"stage {i + 1}", img_size)
            p = min(self.partition_size, size)
            if size % p:
                raise UserError(
                    f"stage {i + 1}: feature map {size}x{size} (img_size {img_size}) is not "
                    f"divisible by partition size {p}; choose img_size so that every stage map "
                    f"is a multiple of {self.partition_size} or smaller than it"
                )
            geometry.append((size, p))
        return geometry

    def stage_strides(self) -> list[int]:
        first = 1 if self.style == "seed" else 2
        return [first] + [2] * (len(self.depths) - 1)


def _halve(size: int, where: str, img_size: int) -> int:
    if size % 2:
        raise UserError(
            f"{where}: feature map {size}x{size} (img_size {img_size}) is odd and "
            "cannot be halved; choose an img_size divisible by 32"
        )
    return size // 2


class MaxVitBlock(nn.Module):
    """MBConv -> block attention -> grid attention. Input NCHW (B, Cin, H, W) -> (B, Cout, H', W')."""

    def __init__(
        self, cin: int, cout: int, stride: int, p: int, cfg: MaxVitConfig, drop_path: float
    ) -> None:
        super().__init__()
        act_layer = functools.partial(nn.GELU, approximate=cfg.gelu)  # a new module per layer
        self.mbconv = MBConv(
            cin, cout, stride, cfg.style, cfg.expansion, act_layer, cfg.bn_eps, drop_path
        )
        attn = dict(
            p=p,
            head_dim=cfg.head_dim,
            expansion=cfg.expansion,
            act_layer=act_layer,
            ln_eps=cfg.ln_eps,
            drop_path=drop_path,
            attn_impl=cfg.attn_impl,
        )
        self.block_attn = PartitionAttention(cout, "block", **attn)
        self.grid_attn = PartitionAttention(cout, "grid", **attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mbconv(x)
        # The one layout switch: NCHW for convs, NHWC for attention and MLP. With a
        # channels_last model these permutes are free views.
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self.grid_attn(self.block_attn(x))
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class MaxVit(nn.Module):
    """MaxViT classifier: stem -> stages of MaxVitBlocks -> pooled head."""

    def __init__(self, cfg: MaxVitConfig, num_classes: int, img_size: int = 224) -> None:
        super().__init__()
        self.config = cfg
        self.img_size = img_size
        self.grad_checkpointing = False
        geometry = cfg.stage_geometry(img_size)
        act = nn.GELU(approximate=cfg.gelu)
        c = cfg.stem_channels
        if cfg.style == "seed":  # conv s2 -> GELU -> conv s2, no bias, no norm
            self.stem = nn.Sequential(
                OrderedDict(
                    conv1=conv_bn_act(3, c, 3, stride=2, act=act),
                    conv2=conv_bn_act(c, c, 3, stride=2),
                )
            )
        else:  # conv s2 -> BN -> GELU -> conv s1, with biases
            self.stem = nn.Sequential(
                OrderedDict(
                    conv1=conv_bn_act(
                        3,
                        c,
                        3,
                        stride=2,
                        bias=True,
                        norm=nn.BatchNorm2d(c, eps=cfg.bn_eps),
                        act=act,
                    ),
                    conv2=conv_bn_act(c, c, 3, bias=True),
                )
            )

        num_blocks = sum(cfg.depths)
        block_drop = [cfg.drop_path * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        stages, cin, k = [], c, 0
        for depth, cout, stride, (_, p) in zip(
            cfg.depths, cfg.channels, cfg.stage_strides(), geometry, strict=True
        ):
            blocks = []
            for j in range(depth):
                blocks.append(
                    MaxVitBlock(cin, cout, stride if j == 0 else 1, p, cfg, block_drop[k])
                )
                cin, k = cout, k + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)

        width = cfg.channels[-1]
        if cfg.style == "seed":  # global average pool -> Linear
            self.head_norm = nn.Identity()
            self.pre_logits = nn.Identity()
        else:  # global average pool -> LayerNorm -> Linear + tanh -> Linear
            self.head_norm = nn.LayerNorm(width, eps=cfg.ln_eps)
            self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(width, width), act=nn.Tanh()))
        self.head = nn.Linear(width, num_classes)
        self.apply(init_weights)

        # timm's feature_info: the stem, then each stage's output map (NCHW)
        self.feature_info = [
            dict(num_chs=c, reduction=4 if cfg.style == "seed" else 2, module="stem")
        ] + [
            dict(num_chs=ch, reduction=img_size // size, module=f"stages.{i}")
            for i, (ch, (size, _)) in enumerate(zip(cfg.channels, geometry, strict=True))
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> last stage map (B, C, S/32, S/32)."""
        x = self.stem(x)
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return x

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            # recompute the stage in backward instead of keeping its activations; the RNG
            # state is restored for the recomputation, so stochastic depth draws the same
            return torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_intermediates(
        self, x: torch.Tensor, indices: list[int] | None = None, intermediates_only: bool = False
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps of `feature_info` (0 the stem, 1-4 the stages; default all), NCHW, for
        detection and segmentation backbones. Returns them, or with `intermediates_only`
        False (final stage map, them)."""
        wanted = set(range(len(self.feature_info)) if indices is None else indices)
        bad = sorted(i for i in wanted if not 0 <= i < len(self.feature_info))
        if bad:
            raise UserError(f"feature indices {bad} are outside 0..{len(self.feature_info) - 1}")
        x = self.stem(x)
        maps = [x] if 0 in wanted else []
        for i, stage in enumerate(self.stages, 1):
            if intermediates_only and i > max(wanted):
                break
            x = self._run_stage(stage, x)
            if i in wanted:
                maps.append(x)
        return maps if intermediates_only else (x, maps)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Stage-level activation checkpointing (timm's convention): the same gradients for much
        less activation memory, at the price of a second forward pass of every stage."""
        self.grad_checkpointing = enable

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Last stage map (B, C, h, w) -> logits (B, classes), or the features the classifier
        sees (B, C) with `pre_logits` (timm's convention)."""
        x = self.pre_logits(self.head_norm(x.mean((2, 3))))  # (B, C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final Linear layer (timm's convention)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with `num_classes` outputs."""
        self.head = nn.Linear(self.head.in_features, num_classes)
        init_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay in the `paper` recipe: norms, biases and
        relative-position tables (all 1-D, plus the tables)."""
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or n.endswith("rel_pos.table")}
