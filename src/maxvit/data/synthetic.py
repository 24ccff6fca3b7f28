"""A small synthetic archive in the official Tiny ImageNet layout, for tests on any machine.

Each class has its own colour and stripe direction (so a model can learn something), a fifth
of the images are grayscale JPEGs, one is CMYK and one is not 64x64, as in the real data.
Flags add the defects the preparation must catch.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = "tiny-imagenet-200/"


def _image(
    label: int, k: int, rng: np.random.Generator, size: tuple[int, int] = (64, 64)
) -> np.ndarray:
    w, h = size
    colour = np.array([(label * 67) % 256, (label * 131 + 60) % 256, (label * 29 + 120) % 256])
    yy, xx = np.mgrid[0:h, 0:w]
    angle = np.pi * (label % 8) / 8
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / (2 + label % 3))
    img = colour * (0.6 + 0.3 * stripes[..., None]) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(array: np.ndarray, mode: str = "RGB") -> bytes:
    img = Image.fromarray(array)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_synthetic_archive(
    path: str | Path,
    *,
    num_classes: int = 200,
    train_per_class: int = 2,
    val_per_class: int = 1,
    test_images: int = 4,
    corrupt: bool = False,
    missing_val: bool = False,
    missing_train_class: bool = False,
    unsafe_entry: str | None = None,
    seed: int = 0,
) -> Path:
    """Write the archive to `path` (a .zip) and return it.

    corrupt: the first train image of class 1 is a truncated JPEG.
    missing_val: val_annotations.txt lists one more image than val/images holds.
    missing_train_class: the last class of wnids.txt has no train folder.
    unsafe_entry: an extra entry with this name (e.g. "../evil.txt" or "/etc/x").
    """
    rng = np.random.default_rng(seed)
    path = Path(path)
    wnids = [f"n{10_000_000 + i:08d}" for i in range(num_classes)]
    count = 0

    def encode(label: int, k: int, size: tuple[int, int] = (64, 64)) -> bytes:
        nonlocal count
        count += 1
        mode = "L" if count % 5 == 0 else "RGB"
        return _jpeg(_image(label, k, rng, size), mode)

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(ROOT + "wnids.txt", "".join(f"{w}\n" for w in wnids))
        words = ["n00000001\tentity"] + [
            f"{w}\tthing {i}, synthetic class {i}" for i, w in enumerate(wnids)
        ]
        zf.writestr(ROOT + "words.txt", "\n".join(words) + "\n")
        for label, wnid in enumerate(wnids):
            if missing_train_class and label == num_classes - 1:
                continue
            folder = f"{ROOT}train/{wnid}/"
            zf.writestr(folder + f"{wnid}_boxes.txt", "")
            for k in range(train_per_class):
                data = encode(label, k)
                if label == 0 and k == 0:  # one CMYK image
                    data = _jpeg(_image(label, k, rng), "CMYK")
                if corrupt and label == 1 and k == 0:
                    data = data[: len(data) // 2]
                zf.writestr(folder + f"images/{wnid}_{k}.JPEG", data)
        annotations = []
        n = 0
        for label, wnid in enumerate(wnids):
            for _ in range(val_per_class):
                zf.writestr(f"{ROOT}val/images/val_{n}.JPEG", encode(label, n))
                annotations.append(f"val_{n}.JPEG\t{wnid}\t0\t0\t63\t63")
                n += 1
        if missing_val:
            annotations.append(f"val_{n}.JPEG\t{wnids[0]}\t0\t0\t63\t63")
        zf.writestr(ROOT + "val/val_annotations.txt", "\n".join(annotations) + "\n")
        for k in range(test_images):
            size = (72, 56) if k == 0 else (64, 64)  # one image that is not 64x64
            zf.writestr(f"{ROOT}test/images/test_{k}.JPEG", encode(k % num_classes, k, size))
        if unsafe_entry is not None:
            zf.writestr(unsafe_entry, "x")
    return path
