"""Small models for fast tests: the paper design at 64 px, one narrow block per stage, ours and
timm's (`maxvit_tiny_tf` with the same sizes). Partition 2 is timm's img_size / 32."""

from __future__ import annotations

import dataclasses

from timm.models.maxxvit import MaxxVit, model_cfgs

SMALL_PAPER = dict(
    img_size=64, partition_size=2, depths=(1, 1, 1, 1), channels=(32, 64, 64, 96), stem_channels=32
)


def timm_small_paper(num_classes: int) -> MaxxVit:
    """timm's MaxViT-T design at the sizes of `SMALL_PAPER` (what our maxvit_tiny is with it)."""
    cfg = dataclasses.replace(
        model_cfgs["maxvit_tiny_tf"],
        depths=SMALL_PAPER["depths"],
        embed_dim=SMALL_PAPER["channels"],
        stem_width=SMALL_PAPER["stem_channels"],
        head_hidden_size=SMALL_PAPER["channels"][-1],
    )
    return MaxxVit(cfg, img_size=SMALL_PAPER["img_size"], num_classes=num_classes)
