"""`create_model`: build any registered model by name, optionally with weights from a file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from maxvit.errors import UserError
from maxvit.models.baselines import BASELINES
from maxvit.models.config import MaxVitConfig
from maxvit.models.convert import load_pretrained
from maxvit.models.model import MaxVit
from maxvit.models.variants import NUM_CLASSES, VARIANTS, default_img_size, pretrained_cfg


def create_model(
    name: str,
    num_classes: int = NUM_CLASSES,
    img_size: int | None = None,
    pretrained: str | Path | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a key of `VARIANTS` or of `baselines.BASELINES` (see `list_models()`).
        num_classes: classifier outputs; changes only the head. 0: no classifier (the model
            returns pooled features).
        img_size: square input side; None means the model's default (224, or 64 for *_nano).
        pretrained: a timm-format or maxvit-format checkpoint file (.safetensors, .pt/.pth) to
            load; the head is re-initialised when `num_classes` differs from the checkpoint's.
        overrides: MaxVitConfig fields (e.g. drop_path=0.2) or baseline builder arguments.
    """
    default = default_img_size(name)  # UserError naming the choices for an unknown name
    size = default if img_size is None else img_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"img_size must be a positive whole number of pixels, got {img_size!r}")
    if name in VARIANTS:
        cfg = VARIANTS[name].config
        fields = {f.name for f in dataclasses.fields(MaxVitConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise UserError(f"unknown option(s) {unknown} for {name}; valid: {sorted(fields)}")
        model = MaxVit(dataclasses.replace(cfg, **overrides), num_classes, size)
    else:
        model = BASELINES[name].build(num_classes=num_classes, img_size=size, **overrides)
    model.pretrained_cfg = model.default_cfg = pretrained_cfg(name, size)
    if pretrained is not None:
        load_pretrained(model, name, pretrained)
    return model
