"""Every model this project builds, in one table: the MaxViT designs and variants (baselines:
`maxvit.models.baselines`), their input sizes and timm ``pretrained_cfg``. `maxvit.models.factory`
builds them."""

from __future__ import annotations

from typing import Any, NamedTuple

from maxvit.errors import UserError
from maxvit.models.config import MaxVitConfig

# The classifier's outputs when nothing says otherwise: Tiny ImageNet's 200 classes. Training
# and evaluation take the count from the data and the checkpoint instead.
NUM_CLASSES = 200

# The two recorded designs, field by field (`MaxVitConfig` says what each field does).
#   field           seed (Keras reproduction)   paper (official TF = timm maxvit_*_tf)
DESIGNS: dict[str, tuple[Any, Any]] = {
    "stem_stride":   (4,                          2),
    "stem_norm":     (False,                      True),
    "conv_bias":     (False,                      True),
    "pre_norm":      (False,                      True),
    "expand_output": (False,                      True),
    "se_ratio":      (0.25,                       0.25),
    "se_act":        ("gelu",                     "silu"),
    "project_norm":  (True,                       False),
    "shortcut":      ("conv",                     "identity"),
    "head":          ("linear",                   "norm_mlp"),
    "gelu":          ("none",                     "tanh"),
    "bn_eps":        (1e-3,                       1e-3),
    "ln_eps":        (1e-3,                       1e-5),  # Keras' default / TF's
}  # fmt: skip
SEED = {field: values[0] for field, values in DESIGNS.items()}
PAPER = {field: values[1] for field, values in DESIGNS.items()}


class Variant(NamedTuple):
    config: MaxVitConfig
    img_size: int  # default input side
    timm_name: str | None = None  # timm's model of the same design (weights convert), if any


# Regularisation (drop_path) is set by training presets.
VARIANTS: dict[str, Variant] = {
    # The recorded Keras reproduction: 33,067,056 parameters (Keras count) at 224.
    "maxvit_seed": Variant(MaxVitConfig((2, 2, 5, 2), (64, 128, 256, 512), 64, **SEED), 224),
    # A small model of the seed design for CPU experiments at 64x64 (stage maps 16/8/4/2).
    "maxvit_nano": Variant(
        MaxVitConfig((1, 1, 2, 1), (32, 64, 128, 192), 32, partition_size=4, **SEED), 64
    ),
    # The paper's variants (MaxViT-T/S/B/L), equal to timm's maxvit_{t,s,b,l}_tf_224.
    "maxvit_tiny": Variant(
        MaxVitConfig((2, 2, 5, 2), (64, 128, 256, 512), 64, **PAPER), 224, "maxvit_tiny_tf_224"
    ),
    "maxvit_small": Variant(
        MaxVitConfig((2, 2, 5, 2), (96, 192, 384, 768), 64, **PAPER), 224, "maxvit_small_tf_224"
    ),
    "maxvit_base": Variant(
        MaxVitConfig((2, 6, 14, 2), (96, 192, 384, 768), 64, **PAPER), 224, "maxvit_base_tf_224"
    ),
    "maxvit_large": Variant(
        MaxVitConfig((2, 6, 14, 2), (128, 256, 512, 1024), 128, **PAPER),
        224,
        "maxvit_large_tf_224",
    ),
}


def list_models() -> list[str]:
    """Names accepted by `maxvit.models.create_model`: MaxViT variants, then baselines."""
    from maxvit.models.baselines import BASELINES

    return list(VARIANTS) + list(BASELINES)


def default_img_size(name: str) -> int:
    """The input size a model is built for when `img_size` is not given."""
    from maxvit.models.baselines import BASELINES

    if name in VARIANTS:
        return VARIANTS[name].img_size
    if name in BASELINES:
        return BASELINES[name].default_img_size
    raise UserError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")


def pretrained_cfg(name: str, img_size: int | None = None) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of model `name` built at `img_size` (default: its own).

    The models run only at the size they are built for, so ``input_size`` is that size. The
    paper variants carry the official weights' recipe (crop 0.95, bicubic, 1000 classes, the
    Hub file timm's `*_tf_224` loads from); the rest this project's (no crop, bilinear, as
    `maxvit eval` does, and Tiny ImageNet's classes).
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from maxvit.models.baselines import BASELINES

    size = default_img_size(name) if img_size is None else img_size
    timm_name = VARIANTS[name].timm_name if name in VARIANTS else None
    reduction = 32 if name in VARIANTS else BASELINES[name].reduction
    cfg: dict[str, Any] = dict(
        url="",
        hf_hub_id=f"timm/{timm_name}.in1k" if timm_name else None,
        num_classes=1000 if timm_name else NUM_CLASSES,
        input_size=(3, size, size),
        pool_size=(size // reduction, size // reduction) if reduction else None,
        crop_pct=0.95 if timm_name else 1.0,
        interpolation="bicubic" if timm_name else "bilinear",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="stem.conv1.conv",
        classifier="head",
        fixed_input_size=True,
    )
    if name in BASELINES:
        cfg.update(first_conv=BASELINES[name].first_conv, classifier=BASELINES[name].classifier)
    return cfg
