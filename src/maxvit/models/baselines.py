"""Baseline models (ViT, CoAtNet) built from timm and registered for ``create_model``.

The recorded reproduction compares MaxViT with a 12-block ViT (speed) and with CoAtNet
(overfitting). These baselines are timm's own implementations, only configured here: the
class count and input size are passed through, nothing is re-implemented. ``BASELINES`` is
the one table ``maxvit.models.create_model`` falls back to after the MaxViT variants, so every
training preset accepts them via ``--model``.

Sizes:

* ``vit_base_16`` / ``vit_small_16``: timm's ViT-B/16 and ViT-S/16 (12 encoder blocks each).
  The patch is 16 at 128 px and above (224 -> 14x14 tokens) and 8 below it, so that a
  64x64 Tiny ImageNet image still gives 8x8 = 64 tokens. ``patch_size=`` overrides it.
* ``coatnet_0``: timm's ``coatnet_0_224``, the paper's CoAtNet-0 configuration
  (stages C-C-T-T, widths 96-768, depths 2-3-5-2); its relative-position tables are sized
  for the given ``img_size`` (a multiple of 32).
* ``vit_nano`` / ``coatnet_nano``: small versions for CPU work at 64x64, sized to match
  ``maxvit_nano`` (2.61 M parameters at 64x64) in *parameter count*, within 25 % (checked by
  ``tests/models/test_baselines.py``). ``vit_nano`` keeps the 12 blocks of the speed claim
  and MaxViT's head size 32 at width 128, 4 heads (2.44 M, -7 %); ``coatnet_nano`` is
  CoAtNet-0 (same block types and depths 2-3-5-2) at a third of its widths, 32-256
  (2.77 M, +6 %). Their FLOPs differ more (see docs/benchmarks.md).

Overrides are passed to timm; ``drop_path`` (the name MaxViT's config and the training presets
use) is translated to timm's ``drop_path_rate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Baseline:
    """One registered baseline."""

    # build(num_classes=..., img_size=..., **overrides) -> nn.Module; overrides go to timm.
    build: Callable[..., nn.Module]
    # Input side (pixels) used when the caller gives no img_size.
    default_img_size: int
    # One line for `maxvit models list` and the docs.
    description: str
    # timm's pretrained_cfg names: the classifier and first conv modules
    classifier: str
    first_conv: str
    # input side / last map side (None: the features are a token sequence, as ViT's)
    reduction: int | None


def _vit_patch(img_size: int) -> int:
    """Patch side for a ViT at ``img_size``: 16 from 128 px up, 8 for Tiny-ImageNet-sized input."""
    return 16 if img_size >= 128 else 8


def _timm_kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides in timm's spelling: the project-wide ``drop_path`` becomes ``drop_path_rate``."""
    kwargs = dict(overrides)
    if "drop_path" in kwargs:
        kwargs["drop_path_rate"] = kwargs.pop("drop_path")
    return kwargs


def _timm_vit(timm_name: str) -> Callable[..., nn.Module]:
    """A builder for one of timm's registered ViT configurations (ViT-B/16, ViT-S/16)."""

    def build(num_classes: int, img_size: int, **overrides: Any) -> nn.Module:
        import timm

        kwargs = {"patch_size": _vit_patch(img_size), **_timm_kwargs(overrides)}
        return timm.create_model(
            timm_name, pretrained=False, num_classes=num_classes, img_size=img_size, **kwargs
        )

    return build


def _vit_nano(num_classes: int, img_size: int, **overrides: Any) -> nn.Module:
    """A 12-block ViT, 128 wide (4 heads of 32): maxvit_nano's parameter count, -7 %."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs: dict[str, Any] = dict(
        embed_dim=128, depth=12, num_heads=4, mlp_ratio=4.0, patch_size=_vit_patch(img_size)
    )
    kwargs.update(_timm_kwargs(overrides))
    return VisionTransformer(img_size=img_size, num_classes=num_classes, **kwargs)


def _coatnet_0(num_classes: int, img_size: int, **overrides: Any) -> nn.Module:
    """timm's paper-configured CoAtNet-0."""
    import timm

    return timm.create_model(
        "coatnet_0_224",
        pretrained=False,
        num_classes=num_classes,
        img_size=img_size,
        **_timm_kwargs(overrides),
    )


def _coatnet_nano(num_classes: int, img_size: int, **overrides: Any) -> nn.Module:
    """CoAtNet-0 (C-C-T-T, depths 2-3-5-2) at a third of its widths: 32-64-128-256."""
    from timm.models.maxxvit import MaxxVit, MaxxVitCfg

    cfg = MaxxVitCfg(
        embed_dim=(32, 64, 128, 256),
        depths=(2, 3, 5, 2),
        block_type=("C", "C", "T", "T"),
        stem_width=32,
        head_hidden_size=256,
    )
    return MaxxVit(cfg, img_size=img_size, num_classes=num_classes, **_timm_kwargs(overrides))


_VIT = dict(classifier="head", first_conv="patch_embed.proj", reduction=None)
_COATNET = dict(classifier="head.fc", first_conv="stem.conv1", reduction=32)

BASELINES: dict[str, Baseline] = {
    "vit_base_16": Baseline(
        _timm_vit("vit_base_patch16_224"),
        224,
        "ViT-B/16 (timm): 12 blocks, width 768, 12 heads; patch 8 below 128 px",
        **_VIT,
    ),
    "vit_small_16": Baseline(
        _timm_vit("vit_small_patch16_224"),
        224,
        "ViT-S/16 (timm): 12 blocks, width 384, 6 heads; patch 8 below 128 px",
        **_VIT,
    ),
    "coatnet_0": Baseline(
        _coatnet_0,
        224,
        "CoAtNet-0 (timm coatnet_0_224, paper config): C-C-T-T, 96-768 wide",
        **_COATNET,
    ),
    "vit_nano": Baseline(
        _vit_nano,
        64,
        "CPU-sized ViT (timm): 12 blocks, width 128, 4 heads; maxvit_nano's params",
        **_VIT,
    ),
    "coatnet_nano": Baseline(
        _coatnet_nano,
        64,
        "CPU-sized CoAtNet (timm MaxxVit): CoAtNet-0 at 1/3 width (32-256); maxvit_nano's params",
        **_COATNET,
    ),
}
