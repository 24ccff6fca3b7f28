"""Small synthetic data sets for tests on any machine: a Tiny ImageNet archive in the official
layout, and a class-per-folder tree of images of odd sizes, formats and modes.

Each class has its own colour and stripe direction (so a model can learn something). In the
archive a fifth of the images are grayscale JPEGs, one is CMYK and one is not 64x64, as in the
real data; flags add the defects the preparation must catch. The tree cycles through every
format and mode the loaders must turn into 8-bit RGB (`TREE_KINDS`).
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
    path.parent.mkdir(parents=True, exist_ok=True)
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


# (file suffix, PIL mode, PIL format) of the images of a synthetic tree, in turn
TREE_KINDS = (
    (".JPEG", "RGB", "JPEG"),
    (".jpg", "L", "JPEG"),
    (".png", "RGBA", "PNG"),
    (".jpeg", "CMYK", "JPEG"),
    (".png", "P", "PNG"),
    (".webp", "RGB", "WEBP"),
    (".png", "I;16", "PNG"),
    (".png", "LA", "PNG"),
)


def _tree_image(label: int, k: int, rng: np.random.Generator, kind: int) -> tuple[bytes, str]:
    suffix, mode, fmt = TREE_KINDS[kind % len(TREE_KINDS)]
    size = (40 + 13 * (k % 5), 36 + 11 * ((k + label) % 4))  # odd, non-square sizes
    array = _image(label, k, rng, size)
    if mode == "I;16":
        img = Image.fromarray(array.mean(2).astype(np.uint16) * 257)  # 16-bit gray, full range
    elif mode == "P":
        img = Image.fromarray(array).convert("P", palette=Image.Palette.ADAPTIVE)
        img.info["transparency"] = 0
    elif mode in ("RGBA", "LA"):
        img = Image.fromarray(array).convert(mode)
        alpha = np.full(size[::-1], 255, np.uint8)
        alpha[:, : size[0] // 4] = 0  # a transparent band on the left
        img.putalpha(Image.fromarray(alpha))
    else:
        img = Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"transparency": 0} if mode == "P" else {}))
    return buf.getvalue(), suffix


def make_synthetic_tree(
    root: str | Path,
    *,
    num_classes: int = 4,
    train_per_class: int = 6,
    val_per_class: int = 2,
    corrupt: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``root/{train,val}/<class>/<image>`` and return `root`.

    Images cycle through `TREE_KINDS` (JPEG RGB, grayscale and CMYK; PNG RGBA, palette with
    transparency, 16-bit gray and LA; WebP) at odd sizes. corrupt: the first train image of the
    second class is a truncated JPEG.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    n = 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label in range(num_classes):
            folder = root / split / f"class_{label:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                data, suffix = _tree_image(label, k, rng, n)
                n += 1
                if corrupt and split == "train" and label == 1 and k == 0:
                    data, suffix = _jpeg(_image(label, k, rng))[:300], ".jpg"
                (folder / f"img_{k:03d}{suffix}").write_bytes(data)
    return root
