"""Per-batch work on the training device: RandAugment, mixing by pass kind, upsampling,
normalisation and soft targets (:class:`BatchAugment`), and the evaluation transform
(:class:`EvalTransform`).

:class:`BatchAugment` runs on the whole uint8 batch the loader delivers: RandAugment, mixup /
cutmix / random erasing by pass kind, upsampling to the model's input size (uint8 bilinear,
only when the loader's resolution is lower), conversion to float with ImageNet normalisation,
and the soft targets with label smoothing. Its randomness comes only from the
``torch.Generator`` it is given. :class:`EvalTransform` resizes, centre-crops and normalises
Tiny ImageNet batches; images of any size get the same geometry per image in the loader
(:func:`maxvit.data.crop.eval_box`).

RandAugment is torchvision's (``v2.RandAugment``): its operation table and its per-operation
function are used as they are, only the random choices are drawn per sample and the samples
that drew the same operation are transformed together.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from maxvit.data.augment_config import CUTMIX, ERASE, MIXUP, AugmentConfig, check_eval_crop
from maxvit.data.tensor_ops import put_rows, seeded_torch, take_rows

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


RANDAUGMENT_PRIVATE = ("_AUGMENTATION_SPACE", "_apply_image_or_video_transform")


class BatchedRandAugment:
    """torchvision's RandAugment with per-sample random choices, applied group-wise to a batch.

    Each sample draws `num_ops` operations uniformly from ``v2.RandAugment``'s table and a sign
    for signed ones, exactly as ``v2.RandAugment.forward`` does; samples that drew the same
    (operation, sign) are transformed in one call of torchvision's own operation function.
    All operations are per image (statistics such as autocontrast's are taken per image), so
    grouping does not change the result (tests/data check this against per-image calls).
    """

    # torchvision has no public API for RandAugment's operation table or for applying one named
    # operation at a magnitude; these two private members are that (RANDAUGMENT_PRIVATE), and
    # tests/data/test_batch_augment.py fails naming them if a torchvision release moves them.
    def __init__(self, num_ops: int, magnitude: int) -> None:
        self.num_ops = num_ops
        self.magnitude = magnitude
        self._ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
        self.ops = list(self._ra._AUGMENTATION_SPACE.items())

    def op_magnitude(self, op: int, negative: bool, height: int, width: int) -> float:
        """The magnitude `v2.RandAugment` would use for operation `op` on an image of this size."""
        _, (magnitudes_fn, signed) = self.ops[op]
        magnitudes = magnitudes_fn(self._ra.num_magnitude_bins, height, width)
        if magnitudes is None:
            return 0.0
        value = float(magnitudes[self.magnitude])
        return -value if (signed and negative) else value

    def apply_op(self, images: torch.Tensor, op: int, negative: bool) -> torch.Tensor:
        """Apply operation `op` (index in the table) to a uint8 batch, as v2.RandAugment does."""
        name = self.ops[op][0]
        magnitude = self.op_magnitude(op, negative, images.shape[-2], images.shape[-1])
        return self._ra._apply_image_or_video_transform(
            images, name, magnitude, interpolation=self._ra.interpolation, fill=self._ra._fill
        )

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Operation indices (n, num_ops) and signs (True = negative) for n samples."""
        ops = rng.integers(len(self.ops), size=(n, self.num_ops))
        negative = rng.random((n, self.num_ops)) < 0.5
        return ops, negative

    def apply(self, images: torch.Tensor, ops: np.ndarray, negative: np.ndarray) -> torch.Tensor:
        """Transform `images` (uint8, B x 3 x H x W, modified in place) with the drawn choices."""
        for step in range(ops.shape[1]):
            signed = np.array([self.ops[o][1][1] for o in ops[:, step]], dtype=bool)
            keys = ops[:, step] * 2 + (negative[:, step] & signed)
            for key in np.unique(keys):
                op, neg = divmod(int(key), 2)
                if self.ops[op][0] == "Identity":
                    continue
                rows = np.flatnonzero(keys == key)
                put_rows(images, rows, self.apply_op(take_rows(images, rows), op, bool(neg)))
        return images

    def __call__(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        ops, negative = self.draw(images.shape[0], rng)
        return self.apply(images, ops, negative)


def _normalise(
    images: torch.Tensor, img_size: int, mean: torch.Tensor, inv_std: torch.Tensor
) -> torch.Tensor:
    """uint8 (B,3,h,w) -> float (B,3,img_size,img_size): uint8 bilinear resize, then (x - mean) / std.

    `mean` and `inv_std` are per channel in 0-255 units. On the CPU the batch is processed in
    chunks of 8 so that the resized uint8 chunk is still in cache when it is converted.
    """
    n = images.shape[0]
    resize = tuple(images.shape[-2:]) != (img_size, img_size)
    out = torch.empty((n, 3, img_size, img_size), dtype=torch.float32, device=images.device)
    step = 8 if images.device.type == "cpu" else max(n, 1)
    for start in range(0, n, step):
        chunk = images[start : start + step]
        if resize:
            chunk = F.resize(chunk, [img_size, img_size], antialias=True)
        torch.sub(chunk, mean, out=out[start : start + step]).mul_(inv_std)
    return out


class _Normalising(nn.Module):
    """Holds the ImageNet statistics as (non-persistent) buffers, so `.to(device)` moves them."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1 / std, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        return _normalise(images, self.img_size, self.mean.to(device), self.inv_std.to(device))


class EvalTransform(_Normalising):
    """Evaluation on the device: uint8 batch -> (B, 3, img_size, img_size) normalised float.

    With `crop`, the batch is resized to round(img_size / crop) and centre-cropped to img_size
    first; crop 1.0 is the recorded test transform (resize to 224x224, no crop), 0.95 the one of
    the official MaxViT weights. ``crop=None`` is for batches that the loader already brought
    to img_size with that geometry (images of any size, :func:`maxvit.data.crop.eval_box`).
    """

    def __init__(self, img_size: int, crop: float | None = 1.0) -> None:
        super().__init__(img_size)
        if crop is not None:
            check_eval_crop(crop)
        self.crop = crop

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop is not None and self.crop < 1:
            side = round(self.img_size / self.crop)
            images = F.center_crop(F.resize(images, [side, side], antialias=True), self.img_size)
        return self.to_model_input(images)


def _generator_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (), generator=generator, device=generator.device))


def cutmix_boxes(
    lam: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One box per sample whose area is about (1 - lam) of the image, centre uniform, clipped.

    Returns (boxes (n, 4) as top, bottom, left, right; exact lam = 1 - box area / image area).
    """
    ratio = np.sqrt(1.0 - lam)
    cut_h = (height * ratio).astype(np.int64)
    cut_w = (width * ratio).astype(np.int64)
    cy = rng.integers(height, size=len(lam))
    cx = rng.integers(width, size=len(lam))
    top = np.clip(cy - cut_h // 2, 0, height)
    bottom = np.clip(cy + cut_h // 2, 0, height)
    left = np.clip(cx - cut_w // 2, 0, width)
    right = np.clip(cx + cut_w // 2, 0, width)
    exact = 1.0 - (bottom - top) * (right - left) / (height * width)
    return np.stack([top, bottom, left, right], axis=1), exact


class BatchAugment(_Normalising):
    """Device-side training augmentation: RandAugment, mixing by kind, upsampling, normalisation,
    soft targets.

    ``forward(images_uint8, labels, kind, generator)`` returns (float normalised images
    (B, 3, img_size, img_size), soft targets (B, num_classes) summing to 1).

    * seed and timm pipelines: RandAugment(randaugment_ops, randaugment_magnitude) per sample
      (:class:`BatchedRandAugment`), at the loader's resolution, before any mixing.
    * seed pipeline, by pass kind: mixup (partner = the batch rolled by one, weight per sample
      from Beta(alpha, alpha)); cutmix (one box per sample, weight recomputed as the exact
      pasted area); random erasing (one rectangle covering `erase_area` of the image, filled
      with the ImageNet mean colour, i.e. 0 after normalisation, like torchvision's default).
    * timm pipeline: random erasing per sample with probability `erase_prob` (per-pixel normal
      noise, timm's "pixel" mode), then ``timm.data.Mixup`` switching between mixup and cutmix
      per batch.

    Mixing runs on the uint8 images before upsampling: mixup and normalisation are linear, so
    this equals mixing after them up to uint8 rounding, and cutmix / erasing boxes are on the
    loader's pixel grid (their edges get the upsampling's blur).
    """

    def __init__(self, aug: AugmentConfig, num_classes: int, img_size: int) -> None:
        super().__init__(img_size)
        self.aug = aug
        self.num_classes = num_classes
        self._randaugment = None
        if aug.pipeline != "none" and aug.randaugment_ops > 0:
            self._randaugment = BatchedRandAugment(aug.randaugment_ops, aug.randaugment_magnitude)
        self._eraser = v2.RandomErasing(p=1.0, scale=aug.erase_area, value=0)
        self._mixup = None
        if aug.pipeline == "timm" and (aug.mixup_alpha > 0 or aug.cutmix_alpha > 0):
            from timm.data import Mixup

            self._mixup = Mixup(
                mixup_alpha=aug.mixup_alpha,
                cutmix_alpha=aug.cutmix_alpha,
                label_smoothing=0.0,  # applied below, the same way for every pipeline
                num_classes=num_classes,
            )

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        kind: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(_generator_seed(generator))
        targets = nn.functional.one_hot(labels.long(), self.num_classes).float()
        if self._randaugment is not None:
            images = self._randaugment(images.clone(), rng)
        if self.aug.pipeline == "seed":
            images, targets = self.mix_by_kind(images, targets, kind, rng)
        elif self.aug.pipeline == "timm":
            images, targets = self.timm_mix(images, labels, targets, rng)
        x = self.to_model_input(images)
        eps = self.aug.label_smoothing
        return x, targets * (1.0 - eps) + eps / self.num_classes

    def mix_by_kind(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        kind: torch.Tensor,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Seed pipeline: mixup / cutmix / erasing on the samples of the matching kind (uint8)."""
        n, _, h, w = images.shape
        kinds = kind.cpu().numpy()
        lam_mix = rng.beta(self.aug.mixup_alpha, self.aug.mixup_alpha, size=n)
        lam_cut = rng.beta(self.aug.cutmix_alpha, self.aug.cutmix_alpha, size=n)
        boxes, lam_cut = cutmix_boxes(lam_cut, h, w, rng)
        erase_seed = int(rng.integers(2**62))
        if not np.isin(kinds, (MIXUP, CUTMIX, ERASE)).any():
            return images, targets
        lam = np.where(kinds == MIXUP, lam_mix, np.where(kinds == CUTMIX, lam_cut, 1.0))
        partner = images.roll(1, 0)
        out = images.clone()
        device = images.device
        mixup = np.flatnonzero(kinds == MIXUP)
        if len(mixup):
            weight = torch.from_numpy(lam[mixup]).float().to(device).view(-1, 1, 1, 1)
            ours = take_rows(images, mixup).float()
            blend = torch.lerp(take_rows(partner, mixup).float(), ours, weight)
            put_rows(out, mixup, blend.round_().to(torch.uint8))
        if (kinds == CUTMIX).any():
            out = torch.where(self._box_mask(boxes, kinds == CUTMIX, h, w, device), partner, out)
        self._erase(out, np.flatnonzero(kinds == ERASE), erase_seed, noise=False)
        weight = torch.from_numpy(lam).float().to(targets.device).view(-1, 1)
        return out, targets * weight + targets.roll(1, 0) * (1.0 - weight)

    @staticmethod
    def _box_mask(
        boxes: np.ndarray, selected: np.ndarray, h: int, w: int, device: torch.device
    ) -> torch.Tensor:
        """(B, 1, h, w) bool mask, True inside each selected sample's box."""
        b = torch.from_numpy(np.where(selected[:, None], boxes, 0)).to(device)
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        top, bottom, left, right = (b[:, i].view(-1, 1, 1) for i in range(4))
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        return inside.unsqueeze(1)

    def _erase(self, images: torch.Tensor, rows: np.ndarray, seed: int, noise: bool) -> None:
        """Erase one rectangle (torchvision's RandomErasing parameters) in each of `rows`.

        Fill: the mean colour (0 after normalisation), or with `noise` per-pixel normal noise
        in normalised units (timm's "pixel" mode), expressed in uint8.
        """
        if len(rows) == 0:
            return
        with seeded_torch(seed):
            for i in rows.tolist():
                p = self._eraser.make_params([images[i]])
                if p["v"] is None:  # no rectangle of that area fits (torchvision gives up)
                    continue
                top, left, h, w = p["i"], p["j"], p["h"], p["w"]
                mean = self.mean[0].to(images.device)
                if noise:
                    fill = torch.randn((3, h, w)).to(images.device) * self.std[0] + mean
                else:
                    fill = mean
                images[i, :, top : top + h, left : left + w] = (
                    fill.round().clamp(0, 255).to(torch.uint8)
                )

    def timm_mix(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """timm pipeline: random erasing with probability `erase_prob`, then timm's Mixup."""
        images = images.clone()
        erase = np.flatnonzero(rng.random(images.shape[0]) < self.aug.erase_prob)
        self._erase(images, erase, int(rng.integers(2**62)), noise=True)
        even = images.shape[0] - images.shape[0] % 2  # timm's Mixup needs an even batch
        if even == 0 or self._mixup is None:
            return images, targets
        x = images[:even].float()
        state = np.random.get_state()  # timm draws from NumPy's global generator
        np.random.seed(int(rng.integers(2**32)))
        try:
            x, mixed = self._mixup(x, labels[:even].long())
        finally:
            np.random.set_state(state)
        images[:even] = x.round_().clamp_(0, 255).to(torch.uint8)
        targets = targets.clone()
        targets[:even] = mixed
        return images, targets


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Normalised float (B,3,H,W) -> uint8, for looking at what the model sees."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
