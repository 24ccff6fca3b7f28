"""Every model this project builds, in one table, and the one `create_model`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from maxvit.errors import UserError
from maxvit.models.model import MaxVit, MaxVitConfig

# The classifier's outputs when nothing says otherwise: Tiny ImageNet's 200 classes. Training
# and evaluation take the count from the data and the checkpoint instead.
NUM_CLASSES = 200

_SEED = dict(style="seed", gelu="none", bn_eps=1e-3, ln_eps=1e-3)  # Keras defaults
_PAPER = dict(style="paper", gelu="tanh", bn_eps=1e-3, ln_eps=1e-5)  # official TF / timm *_tf

# name: (config, default input size). Regularisation (drop_path) is set by training presets.
VARIANTS: dict[str, tuple[MaxVitConfig, int]] = {
    # The recorded Keras reproduction: 33,067,056 parameters (Keras count) at 224.
    "maxvit_seed": (MaxVitConfig((2, 2, 5, 2), (64, 128, 256, 512), 64, **_SEED), 224),
    # A small model of the seed design for CPU experiments at 64x64 (stage maps 16/8/4/2).
    "maxvit_nano": (
        MaxVitConfig((1, 1, 2, 1), (32, 64, 128, 192), 32, partition_size=4, **_SEED),
        64,
    ),
    # The paper's variants (MaxViT-T/S/B/L), equal to timm's maxvit_{t,s,b,l}_tf_224.
    "maxvit_tiny": (MaxVitConfig((2, 2, 5, 2), (64, 128, 256, 512), 64, **_PAPER), 224),
    "maxvit_small": (MaxVitConfig((2, 2, 5, 2), (96, 192, 384, 768), 64, **_PAPER), 224),
    "maxvit_base": (MaxVitConfig((2, 6, 14, 2), (96, 192, 384, 768), 64, **_PAPER), 224),
    "maxvit_large": (MaxVitConfig((2, 6, 14, 2), (128, 256, 512, 1024), 128, **_PAPER), 224),
}


def list_models() -> list[str]:
    """Names accepted by `create_model`: MaxViT variants, then baselines."""
    from maxvit.models.baselines import BASELINES

    return list(VARIANTS) + list(BASELINES)


def default_img_size(name: str) -> int:
    """The input size a model is built for when `img_size` is not given."""
    from maxvit.models.baselines import BASELINES

    if name in VARIANTS:
        return VARIANTS[name][1]
    if name in BASELINES:
        return BASELINES[name].default_img_size
    raise UserError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")


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
        num_classes: classifier outputs; changes only the head.
        img_size: square input side; None means the model's default (224, or 64 for *_nano).
        pretrained: a timm-format or maxvit-format checkpoint file (.safetensors, .pt/.pth) to
            load; the head is re-initialised when `num_classes` differs from the checkpoint's.
        overrides: MaxVitConfig fields (e.g. drop_path=0.2) or baseline builder arguments.
    """
    from maxvit.models.baselines import BASELINES

    default = default_img_size(name)  # UserError naming the choices for an unknown name
    size = default if img_size is None else img_size
    if name in VARIANTS:
        cfg = VARIANTS[name][0]
        fields = {f.name for f in dataclasses.fields(MaxVitConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise UserError(f"unknown option(s) {unknown} for {name}; valid: {sorted(fields)}")
        model = MaxVit(dataclasses.replace(cfg, **overrides), num_classes, size)
    else:
        model = BASELINES[name].build(num_classes=num_classes, img_size=size, **overrides)
    if pretrained is not None:
        from maxvit.models.convert import load_pretrained

        load_pretrained(model, name, pretrained)
    return model
