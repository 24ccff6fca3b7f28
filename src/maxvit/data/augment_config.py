"""How training images are augmented (`AugmentConfig`), the pass kinds of an epoch, the recorded
crop geometry, and the checks of the sizes the loaders are asked for.

The pipeline itself is split in two so that each step runs where it is cheap: per sample in the
loader workers (:mod:`maxvit.data.crop`: decoding, crop, resize, flip) and per batch on the
training device (:mod:`maxvit.data.batch_augment`: RandAugment, mixing, erasing, normalisation,
soft targets). This module imports neither torch nor NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from maxvit.errors import UserError

# Pass kinds of the recorded four-pass epoch (the `kind` tensor that the train loader yields).
PLAIN, MIXUP, CUTMIX, ERASE = 0, 1, 2, 3
KIND_NAMES = ("plain", "mixup", "cutmix", "erase")

PIPELINES = ("seed", "timm", "none")

# Recorded geometry: resize to 256, random crop 224, i.e. a crop of 224/256 of the side.
CROP_FRACTION = 224 / 256


@dataclass(frozen=True)
class AugmentConfig:
    """How training images are augmented (see docs/data.md)."""

    # "seed" (recorded), "timm" (RandomResizedCrop + Mixup switching), "none" (eval-like: no aug)
    pipeline: str = "seed"
    # seed pipeline: epoch = plain + mixup + cutmix + erasing passes (else one pass, each batch
    # drawing its kind)
    four_pass: bool = True
    randaugment_ops: int = 2  # RandAugment: operations applied in sequence to each image
    randaugment_magnitude: int = 9  # RandAugment: magnitude bin (of 31) of every operation
    mixup_alpha: float = 0.2  # Beta(alpha, alpha) of the mixup weight (timm pipeline: 0 = off)
    cutmix_alpha: float = 0.2  # Beta(alpha, alpha) of the cutmix weight (timm pipeline: 0 = off)
    # timm pipeline: RandomResizedCrop's range of the crop's area fraction ((1, 1): no crop)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    erase_area: tuple[float, float] = (0.2, 0.5)  # random erasing: area fraction of the box
    erase_prob: float = 0.25  # timm pipeline only (seed pipeline erases in its erasing pass)
    label_smoothing: float = 0.1  # mass spread evenly over all classes after mixing
    resize_first: bool = False  # recorded order: per-image resize 256 + crop 224 on CPU (slow)

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise UserError(
                f"unknown augmentation pipeline {self.pipeline!r}; choose one of {', '.join(PIPELINES)}"
            )
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise UserError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.erase_area
        if not 0 < lo <= hi < 1:
            raise UserError(f"erase_area must satisfy 0 < low <= high < 1, got {self.erase_area}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise UserError("mixup_alpha and cutmix_alpha must be >= 0")
        if self.pipeline == "seed" and not (self.mixup_alpha > 0 and self.cutmix_alpha > 0):
            raise UserError("the seed pipeline's mixup and cutmix passes need positive alphas")
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude < 31:
            raise UserError("randaugment_ops must be >= 0 and randaugment_magnitude in [0, 30]")

    def pass_kinds(self) -> tuple[int, ...]:
        """Kinds of the passes that make up one epoch (one pass when there are no passes)."""
        if self.pipeline == "seed" and self.four_pass:
            return (PLAIN, MIXUP, CUTMIX, ERASE)
        return (PLAIN,)

    def random_kind_per_batch(self) -> bool:
        """Seed pipeline without passes: each batch draws its kind (same mixture, 1/4 the epoch)."""
        return self.pipeline == "seed" and not self.four_pass


def scaled_crop(native: int) -> int:
    """Crop side at native resolution with the recorded geometry (64 -> 56)."""
    return round(native * CROP_FRACTION)


def check_img_size(img_size: int) -> None:
    if not isinstance(img_size, int) or img_size < 8:
        raise UserError(f"image size must be an integer >= 8, got {img_size}")


def check_eval_crop(crop: float) -> None:
    if not 0 < crop <= 1:
        raise UserError(f"the evaluation crop must be in (0, 1], got {crop}")
