"""Per-sample work in the loader workers: decode, crop, resize and flip, at the loader's size.

* :class:`TrainTransform`: the training geometry (the images' own 64x64 for Tiny ImageNet, the
  model's size otherwise). Random parameters are drawn per sample from a NumPy generator that
  the loader seeds from (seed, epoch, batch), so the result never depends on the worker or on
  any global random state.
* :func:`decode_crop` with :func:`eval_box`: the evaluation geometry for images of any size
  (Tiny ImageNet gets it on the device, :class:`maxvit.data.batch_augment.EvalTransform`).
* :func:`decode_batch`: the one loop that decodes a list of images and collects the failures.

The per-batch part (RandAugment, mixing, erasing, normalisation) is in
:mod:`maxvit.data.batch_augment`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from maxvit.data.augment_config import CROP_FRACTION, AugmentConfig, scaled_crop
from maxvit.data.images import ImageError, decode_rgb, image_size, read_bytes
from maxvit.data.images import Source as ImageSource
from maxvit.data.tensor_ops import one_thread, put_rows, seeded_torch, take_rows

Box = Callable[[int, int], tuple[float, float, float, float]]  # (width, height) -> l, t, w, h


def decode_batch(
    names: Sequence[str], decode: Callable[[int], torch.Tensor], size: int
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode images 0..len(names)-1 with ``decode(i)`` (a uint8 (3, size, size) tensor, or
    `ImageError`), on one torch thread.

    Returns (uint8 (n, 3, size, size) of the images that decoded, their indices, (name, error)
    of the others).
    """
    images, kept, failed = [], [], []
    with one_thread():
        for i, name in enumerate(names):
            try:
                images.append(decode(i))
            except ImageError as exc:
                failed.append((name, str(exc)))
                continue
            kept.append(i)
    return stack_images(images, size), kept, failed


class TrainTransform:
    """Per-sample training geometry, in the loader workers: crop, resize and flip.

    Two inputs:

    * ``transform(images, rng)``: decoded images, a uint8 tensor (B, 3, H, W) when all share
      a size (Tiny ImageNet), or a list of uint8 (3, H, W) tensors.
    * ``transform.encoded(read, names, rng)``: encoded images (bytes or file paths) of any size,
      decoded straight into the crop: the crop box is drawn from the image's header, a JPEG is
      decoded at the smallest DCT scale that still covers the crop at full output resolution,
      and crop plus resize is one antialiased resize (torch's uint8 kernel, `decode_crop`).
      Undecodable images are left out and reported.

    Output: uint8 (B, 3, S, S), S = :attr:`out_size`. RandAugment, mixing, erasing and
    normalisation run per batch on the device (:class:`maxvit.data.batch_augment.BatchAugment`).

    Geometry per pipeline ("native" = Tiny ImageNet with ``resize_first=False``):

    * seed, native: random crop of 56 from 64 (the recorded resize-256 / crop-224 geometry at the
      images' own scale); otherwise resize to a square of round(img_size*256/224), then a random
      crop of img_size.
    * timm: RandomResizedCrop (area fraction `crop_scale`, ratio 3/4-4/3) to 64 when native, else
      to img_size.
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
        self._rrc = v2.RandomResizedCrop(self.out_size, scale=aug.crop_scale, antialias=True)

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
            put_rows(out, flip, take_rows(out, flip).flip(-1))
        return out

    def encoded(
        self,
        read: Callable[[int], ImageSource],
        names: Sequence[str],
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
        """Decode and crop images 0..len(names)-1, ``read(i)`` giving the bytes or path of
        image i (or raising `ImageError`); returns `decode_batch`'s (images, kept, failed)."""
        size = self.out_size
        flips = (rng.random(len(names)) < 0.5) & (self.aug.pipeline != "none")

        def decode(i: int) -> torch.Tensor:
            image = decode_crop(read(i), names[i], size, self._box)
            return image.flip(-1) if flips[i] else image

        with seeded_torch(int(rng.integers(2**62))):
            return decode_batch(names, decode, size)

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
        """torchvision's RandomResizedCrop (scale `crop_scale`, ratio 3/4-4/3), parameters per sample."""
        size = [self.out_size, self.out_size]
        out = []
        with seeded_torch(int(rng.integers(2**62))):
            for img in images:
                p = self._rrc.make_params([img])
                out.append(
                    F.resized_crop(
                        img, p["top"], p["left"], p["height"], p["width"], size, antialias=True
                    )
                )
        return torch.stack(out)


def decode_crop(src: ImageSource, name: str, size: int, box: Box) -> torch.Tensor:
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


def eval_box(crop: float, size: int) -> Box:
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
