"""Worker-side geometry: the training crops, decoding straight into a crop, `decode_batch`."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from maxvit.data.augment_config import AugmentConfig
from maxvit.data.crop import TrainTransform, decode_batch, decode_crop, eval_box
from maxvit.data.images import ImageError


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_train_transform_geometry():
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    rng = np.random.default_rng(0)
    seed = TrainTransform(AugmentConfig(), 224, native_size=64)
    assert seed(images, rng).shape == (8, 3, 56, 56)  # 64 * 224 / 256
    first = TrainTransform(AugmentConfig(resize_first=True), 224, native_size=64)
    assert first(images, rng).shape == (8, 3, 224, 224)
    timm = TrainTransform(AugmentConfig(pipeline="timm"), 224, native_size=64)
    assert timm(images, rng).shape == (8, 3, 64, 64)
    none = TrainTransform(AugmentConfig(pipeline="none"), 224, native_size=64)
    assert torch.equal(none(images, rng), images)
    varied = [torch.randint(0, 256, (3, 50 + i, 70), dtype=torch.uint8) for i in range(4)]
    assert seed.__class__(AugmentConfig(), 96, None)(varied, rng).shape == (4, 3, 96, 96)
    # pure function of the generator
    a = seed(images, np.random.default_rng(7))
    b = seed(images, np.random.default_rng(7))
    assert torch.equal(a, b)
    # the crop keeps pixels of the source (a plain crop when no RandAugment op applies)
    plain = TrainTransform(AugmentConfig(randaugment_ops=0), 224, native_size=64)
    out = plain(images, np.random.default_rng(1))
    found = [
        any(
            torch.equal(out[i], images[i, :, t : t + 56, s : s + 56])
            or torch.equal(out[i], images[i, :, t : t + 56, s : s + 56].flip(-1))
            for t in range(9)
            for s in range(9)
        )
        for i in range(8)
    ]
    assert all(found)


def test_decode_batch_keeps_what_decodes_and_names_the_rest():
    def decode(i: int) -> torch.Tensor:
        if i in (1, 3):
            raise ImageError(f"cannot decode img{i}")
        return torch.full((3, 4, 4), i, dtype=torch.uint8)

    images, kept, failed = decode_batch([f"img{i}" for i in range(5)], decode, 4)
    assert kept == [0, 2, 4]
    assert failed == [("img1", "cannot decode img1"), ("img3", "cannot decode img3")]
    assert images.shape == (3, 3, 4, 4) and images[:, 0, 0, 0].tolist() == [0, 2, 4]
    empty, kept, failed = decode_batch(["a"], lambda i: decode(1), 4)
    assert empty.shape == (0, 3, 4, 4) and kept == [] and len(failed) == 1

    def broken(i: int) -> torch.Tensor:
        raise RuntimeError("a bug, not a bad image")

    with pytest.raises(RuntimeError, match="a bug"):  # only image errors are collected
        decode_batch(["a"], broken, 4)


def test_encoded_images_are_cropped_flipped_and_bad_ones_left_out():
    blobs = [jpeg(80, 60, 0), b"not an image", jpeg(50, 90, 1)]
    names = ["a.jpg", "b.jpg", "c.jpg"]
    transform = TrainTransform(AugmentConfig(pipeline="none"), 32, None)
    images, kept, failed = transform.encoded(blobs.__getitem__, names, np.random.default_rng(0))
    assert images.shape == (2, 3, 32, 32) and kept == [0, 2]
    assert [name for name, _ in failed] == ["b.jpg"] and "cannot decode b.jpg" in failed[0][1]
    # "none": the whole image, resized; the same pixels as decode_crop of the full box
    whole = decode_crop(blobs[0], "a.jpg", 32, lambda w, h: (0.0, 0.0, float(w), float(h)))
    assert torch.equal(images[0], whole)
    seed = TrainTransform(AugmentConfig(), 32, None)
    a = seed.encoded(blobs.__getitem__, names, np.random.default_rng(3))
    b = seed.encoded(blobs.__getitem__, names, np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and a[1] == b[1] == [0, 2]


def test_eval_box_is_a_centre_square():
    assert eval_box(1.0, 224)(300, 200) == (50.0, 0.0, 200.0, 200.0)
    left, top, w, h = eval_box(0.875, 224)(256, 256)
    assert (w, h) == (224.0, 224.0) and (left, top) == (16.0, 16.0)
