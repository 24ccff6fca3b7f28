"""Training and evaluation transforms: per-sample work in the loader, per-batch work on the device.

The pipeline is split in two so that each step runs where it is cheap:

* :class:`TrainTransform` runs in the loader workers: decoding (for images of any size,
  straight into the crop), crop / resize and flip, at the loader's resolution (the images' own
  64x64 for Tiny ImageNet, the model's size otherwise). Random parameters are drawn per sample
  from a NumPy generator that the loader seeds from (seed, epoch, batch), so the result never
  depends on the worker or on any global random state.
* :class:`BatchAugment` runs on the training device, on the whole uint8 batch: RandAugment,
  mixup / cutmix / random erasing by pass kind, upsampling to the model's input size (uint8
  bilinear, only when the loader's resolution is lower), conversion to float with ImageNet
  normalisation, and the soft targets with label smoothing. Its randomness comes only from the
  ``torch.Generator`` it is given.
* :class:`EvalTransform` (device) resizes, centre-crops and normalises Tiny ImageNet batches;
  images of any size get the same geometry per image in the loader (:func:`eval_box`).

RandAugment is torchvision's (``v2.RandAugment``): its operation table and its per-operation
function are used as they are, only the random choices are drawn per sample and the samples
that drew the same operation are transformed together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from maxvit.data.images import ImageError, decode_rgb, image_size, read_bytes
from maxvit.data.images import Source as ImageSource
from maxvit.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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
    erase_area: tuple[float, float] = (0.2, 0.5)  # random erasing: area fraction of the box
    erase_prob: float = 0.25  # timm pipeline only (seed pipeline erases in its erasing pass)
    label_smoothing: float = 0.1  # mass spread evenly over all classes after mixing
    resize_first: bool = False  # recorded order: per-image resize 256 + crop 224 on CPU (slow)

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise UserError(
                f"unknown augmentation pipeline {self.pipeline!r}; choose one of {', '.join(PIPELINES)}"
            )
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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside (loader workers already do; this covers num_workers=0).

    The per-sample ops work on many small images: splitting each across threads costs more
    than it gains (measured 20x slower for a batch of 16 at 64x64 on a busy 2-vCPU machine).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _seeded_torch(seed: int) -> Iterator[None]:
    """Run torchvision code that draws from torch's global CPU generator deterministically,
    leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _take_rows(images: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """images[rows] (index_select is much faster than advanced indexing on large images)."""
    return images.index_select(0, torch.from_numpy(rows).to(images.device))


def _put_rows(images: torch.Tensor, rows: np.ndarray, values: torch.Tensor) -> None:
    """images[rows] = values, in place (row copies on the CPU: far faster than index_put)."""
    if images.device.type == "cpu":
        for j, i in enumerate(rows.tolist()):
            images[i].copy_(values[j])
    else:
        images.index_copy_(0, torch.from_numpy(rows).to(images.device), values)


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
    # tests/data/test_transforms.py fails naming them if a torchvision release moves them.
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
                _put_rows(images, rows, self.apply_op(_take_rows(images, rows), op, bool(neg)))
        return images

    def __call__(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        ops, negative = self.draw(images.shape[0], rng)
        return self.apply(images, ops, negative)


class TrainTransform:
    """Per-sample training geometry, in the loader workers: crop, resize and flip.

    Two inputs:

    * ``transform(images, rng)``: decoded images, a uint8 tensor (B, 3, H, W) when all share
      a size (Tiny ImageNet), or a list of uint8 (3, H, W) tensors.
    * ``transform.encoded(sources, rng)``: encoded images (bytes or file paths) of any size,
      decoded straight into the crop: the crop box is drawn from the image's header, a JPEG is
      decoded at the smallest DCT scale that still covers the crop at full output resolution,
      and crop plus resize is one PIL resample. Undecodable images are left out and reported.

    Output: uint8 (B, 3, S, S), S = :attr:`out_size`. RandAugment, mixing, erasing and
    normalisation run per batch on the device (:class:`BatchAugment`).

    Geometry per pipeline ("native" = Tiny ImageNet with ``resize_first=False``):

    * seed, native: random crop of 56 from 64 (the recorded resize-256 / crop-224 geometry at the
      images' own scale); otherwise resize to a square of round(img_size*256/224), then a random
      crop of img_size.
    * timm: RandomResizedCrop (torchvision's parameters) to 64 when native, else to img_size.
    * none: the image as it is when native, else resized to img_size x img_size.

    Then, for seed and timm: horizontal flip (p=0.5).
    """

    def __init__(self, aug: AugmentConfig, img_size: int, native_size: int | None) -> None:
        self.aug = aug
        self.native = native_size is not None and not aug.resize_first
        if aug.pipeline == "seed":
            self.resize_to = None if self.native else round(img_size / CROP_FRACTION)
            self.out_size = scaled_crop(native_size) if self.native else img_size
        else:
            self.resize_to = None if self.native else img_size
            self.out_size = native_size if self.native else img_size
        self._rrc = v2.RandomResizedCrop(self.out_size, antialias=True)

    def __call__(
        self, images: torch.Tensor | Sequence[torch.Tensor], rng: np.random.Generator
    ) -> torch.Tensor:
        pipeline = self.aug.pipeline
        if pipeline == "timm":
            out = self._random_resized_crop(images, rng)
        else:
            out = self._resize(images)
            if pipeline == "seed":
                out = self._random_crop(out, self.out_size, rng)
        if pipeline != "none":
            flip = np.flatnonzero(rng.random(out.shape[0]) < 0.5)
            _put_rows(out, flip, _take_rows(out, flip).flip(-1))
        return out

    def encoded(
        self, sources: Sequence[ImageSource], rng: np.random.Generator, names: Sequence[str]
    ) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
        """Decode and crop encoded images; returns (uint8 (n, 3, S, S), indices of the images
        kept, (name, error) of those left out)."""
        size = self.out_size
        flips = rng.random(len(sources)) < 0.5
        seed = int(rng.integers(2**62))
        images, kept, failed = [], [], []
        with _seeded_torch(seed), one_thread():
            for i, src in enumerate(sources):
                try:
                    image = decode_crop(src, names[i], size, self._box)
                except ImageError as exc:
                    failed.append((names[i], str(exc)))
                    continue
                if flips[i] and self.aug.pipeline != "none":
                    image = image.flip(-1)
                images.append(image)
                kept.append(i)
        return stack_images(images, size), kept, failed

    def _box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(left, top, width, height) of the region of a full image that becomes the output."""
        pipeline = self.aug.pipeline
        if pipeline == "timm":
            # torchvision only reads the size: a stride-0 view of that shape costs nothing
            shape_only = torch.empty(1, 1, 1, dtype=torch.uint8).expand(1, height, width)
            p = self._rrc.make_params([shape_only])
            return p["left"], p["top"], p["width"], p["height"]
        if pipeline == "seed":  # square resize to R, then a random S crop: one box
            r, s = self.resize_to, self.out_size
            top, left = (int(t) for t in torch.randint(r - s + 1, (2,)))
            fx, fy = width / r, height / r
            return left * fx, top * fy, s * fx, s * fy
        return 0.0, 0.0, float(width), float(height)

    def _resize(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack the images, resized to `resize_to` when set (one call for a uniform batch)."""
        size = self.resize_to
        if isinstance(images, torch.Tensor):
            if size is None or tuple(images.shape[-2:]) == (size, size):
                return images.contiguous()
            return F.resize(images, [size, size], antialias=True)
        if size is None:
            return torch.stack(list(images))
        return torch.stack([F.resize(img, [size, size], antialias=True) for img in images])

    @staticmethod
    def _random_crop(images: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
        n, c, h, w = images.shape
        tops = rng.integers(h - crop + 1, size=n)
        lefts = rng.integers(w - crop + 1, size=n)
        out = torch.empty((n, c, crop, crop), dtype=images.dtype)
        for i, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist(), strict=True)):
            out[i] = images[i, :, top : top + crop, left : left + crop]
        return out

    def _random_resized_crop(
        self, images: torch.Tensor | Sequence[torch.Tensor], rng: np.random.Generator
    ) -> torch.Tensor:
        """torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3), parameters per sample."""
        size = [self.out_size, self.out_size]
        out = []
        with _seeded_torch(int(rng.integers(2**62))):
            for img in images:
                p = self._rrc.make_params([img])
                out.append(
                    F.resized_crop(
                        img, p["top"], p["left"], p["height"], p["width"], size, antialias=True
                    )
                )
        return torch.stack(out)


def decode_crop(
    src: ImageSource,
    name: str,
    size: int,
    box: Callable[[int, int], tuple[float, float, float, float]],
) -> torch.Tensor:
    """Decode the region ``box(width, height)`` (left, top, w, h) of an image into a uint8
    (3, size, size) tensor: a JPEG at the smallest DCT scale that still covers the region at
    full output resolution, then one antialiased bilinear resize of the region (torch's uint8
    kernel on the channels-last view, faster than PIL's resize: `maxvit bench kernels --cases
    crop-resize`)."""
    data = read_bytes(src, name)
    width, height = image_size(data, name)
    left, top, w, h = box(width, height)
    rgb = decode_rgb(data, name, at_least=(width * size / w, height * size / h))
    fy, fx = rgb.shape[0] / height, rgb.shape[1] / width  # < 1 when decoded at a reduced scale
    x0, y0 = round(left * fx), round(top * fy)
    x1 = min(max(round((left + w) * fx), x0 + 1), rgb.shape[1])
    y1 = min(max(round((top + h) * fy), y0 + 1), rgb.shape[0])
    region = torch.from_numpy(rgb).permute(2, 0, 1)[None, :, y0:y1, x0:x1]  # (1, 3, h, w) view
    return F.resize(region, [size, size], antialias=True)[0]  # (3, size, size), contiguous


def eval_box(crop: float, size: int) -> Callable[[int, int], tuple[float, float, float, float]]:
    """The evaluation region: resize the shorter side to round(size / crop), centre crop size."""

    def box(width: int, height: int) -> tuple[float, float, float, float]:
        side = min(width, height) * size / round(size / crop)  # the crop, in source pixels
        return (width - side) / 2, (height - side) / 2, side, side

    return box


def stack_images(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 (3, size, size) tensors -> one uint8 (n, 3, size, size) batch (n may be 0)."""
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.stack(list(images))


def check_eval_crop(crop: float) -> None:
    if not 0 < crop <= 1:
        raise UserError(f"the evaluation crop must be in (0, 1], got {crop}")


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
    to img_size with that geometry (images of any size, :func:`eval_box`).
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
            ours = _take_rows(images, mixup).float()
            blend = torch.lerp(_take_rows(partner, mixup).float(), ours, weight)
            _put_rows(out, mixup, blend.round_().to(torch.uint8))
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
        with _seeded_torch(seed):
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


def check_img_size(img_size: int) -> None:
    if not isinstance(img_size, int) or img_size < 8:
        raise UserError(f"image size must be an integer >= 8, got {img_size}")
