"""MaxViT: Multi-Axis Vision Transformer (Tu et al., ECCV 2022), https://arxiv.org/abs/2204.01697

One model class for two recorded designs, which differ only in `MaxVitConfig` field values
(`maxvit.models.variants` holds both, field by field):
  - the seed: the Keras reproduction this project reproduces (`maxvit_seed`, 33,067,056
    parameters counted as Keras counts them), layer by layer as in
    shared/reference/seed_architecture.csv;
  - the paper: the official design, equal to timm's ``maxvit_*_tf_224`` (tested by converting
    weights both ways and comparing logits).

Deliberate deviations and decisions (keep this list current):
  1. Padding is TF/Keras "same" for both designs: stride-2 convs pad only bottom/right. The seed
     was written in Keras and the official code in TF, so this is what both computed.
  2. The seed stem has a GELU between its two convs (an activation adds no parameters and the
     recorded table cannot show it; a plain linear stem would be unusual).
  3. GELU is exact (erf) for the seed, as Keras' default, and tanh-approximated for the paper
     design, as the official weights were trained.
  4. Window and grid size are one `partition_size`, clamped per stage to the feature map when
     the map is smaller (one window then covers the whole map); a map not divisible by it is
     rejected at construction, naming the stage. The model runs at the input size it was built
     for only (timm's ``fixed_input_size``).
  5. Attention on CPU uses the explicit softmax path by default (`attn_impl="auto"`), because
     SDPA with a learned bias mask falls back to a slower math path there; CUDA uses SDPA.
     Both are tested equal.
  6. Stochastic depth (`drop_path`) is one probability per block, rising linearly from 0 to
     `MaxVitConfig.drop_path` over all blocks; the block's MBConv, block attention and grid
     attention share it (as timm does). The seed preset uses 0.
  7. Module and parameter names are this project's (``stages.1.0.mbconv.expand.conv``), not
     timm's (``stages.1.blocks.0.conv.conv1_1x1``): `maxvit.models.convert` maps between them.
  8. The head's LayerNorm (paper design) acts on the pooled features, as in timm's
     ``NormMlpClassifierHead``; there is no norm on the last stage map, so
     ``forward_intermediates(norm=True)`` changes nothing (as for timm's ``maxvit_*_tf``).
  9. torch.fx traces the model with two functions kept whole (`layers.attend`,
     `layers.same_pad`); TorchScript is not supported (docs/model.md).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.utils.checkpoint
from torch import nn

from maxvit.errors import UserError
from maxvit.models.config import MaxVitConfig
from maxvit.models.contract import TimmContract
from maxvit.models.layers import Gelu, MBConv, PartitionAttention, Stem, init_weights

__all__ = ["MaxVit", "MaxVitBlock", "MaxVitConfig"]

GLOBAL_POOLS = ("avg", "")  # global average pooling, or none (the head runs per position)


class MaxVitBlock(nn.Module):
    """MBConv -> block attention -> grid attention. Input NCHW (B, Cin, H, W) -> (B, Cout, H', W')."""

    def __init__(
        self, cin: int, cout: int, stride: int, p: int, cfg: MaxVitConfig, drop_path: float
    ) -> None:
        super().__init__()
        self.mbconv = MBConv(cin, cout, stride, cfg, drop_path)
        attn = dict(
            p=p,
            head_dim=cfg.head_dim,
            expansion=cfg.expansion,
            act_layer=lambda: Gelu(approximate=cfg.gelu),  # a new module per layer
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


class MaxVit(TimmContract, nn.Module):
    """MaxViT classifier: stem -> stages of MaxVitBlocks -> head (pool, head_norm, pre_logits,
    head). timm's model API (`TimmContract`) comes with it.

    ``num_classes`` 0 leaves the head without a classifier (pooled features out);
    ``global_pool`` "avg" (default) or "" (no pooling: the head runs at every position and the
    output is a map (B, classes, h, w)).
    """

    def __init__(
        self, cfg: MaxVitConfig, num_classes: int, img_size: int = 224, global_pool: str = "avg"
    ) -> None:
        super().__init__()
        self.config = cfg
        self.img_size = img_size
        self.grad_checkpointing = False
        geometry = cfg.stage_geometry(img_size)
        c = cfg.stem_channels
        self.stem = Stem(cfg)

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

        # timm's attributes: the last stage map's channels, and the width the classifier sees
        self.num_features = self.head_hidden_size = width = cfg.channels[-1]
        if cfg.head == "norm_mlp":  # pool -> LayerNorm -> Linear + tanh -> Linear
            self.head_norm = nn.LayerNorm(width, eps=cfg.ln_eps)
            self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(width, width), act=nn.Tanh()))
        else:  # pool -> Linear
            self.head_norm = nn.Identity()
            self.pre_logits = nn.Identity()
        self._set_head(num_classes, global_pool)
        self.apply(init_weights)

        # timm's feature_info: the stem, then each stage's output map (NCHW)
        self.feature_info = [dict(num_chs=c, reduction=cfg.stem_stride, module="stem")] + [
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

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Last stage map (B, C, h, w) -> logits (B, classes), or the features the classifier
        sees (B, C) with `pre_logits` (timm's convention). Without global pooling the head runs
        at every position: (B, classes or C, h, w)."""
        if self.global_pool == "avg":
            x = self.pre_logits(self.head_norm(x.mean((2, 3))))  # (B, C)
            return x if pre_logits else self.head(x)
        x = self.pre_logits(self.head_norm(x.permute(0, 2, 3, 1)))  # (B, h, w, C)
        return (x if pre_logits else self.head(x)).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A freshly initialised classifier with `num_classes` outputs; 0 removes it, so that
        the model returns the pooled features (B, head_hidden_size). `global_pool` "avg" or ""
        (no pooling) replaces the pooling; None keeps it (timm's convention)."""
        self._set_head(num_classes, global_pool)
        init_weights(self.head)

    def _set_head(self, num_classes: int, global_pool: str | None) -> None:
        if num_classes < 0:
            raise UserError(f"num_classes must be 0 (no classifier) or more, got {num_classes}")
        if global_pool is not None:
            if global_pool not in GLOBAL_POOLS:
                raise UserError(f"global_pool must be 'avg' or '' (none), got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        like = next(self.parameters())  # the new layer joins the model's device and dtype
        self.head = (
            nn.Linear(self.head_hidden_size, num_classes, device=like.device, dtype=like.dtype)
            if num_classes
            else nn.Identity()
        )
