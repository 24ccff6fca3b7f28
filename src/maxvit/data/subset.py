"""`maxvit data subset`: a smaller Tiny ImageNet archive in the official layout, made from the
official one (the zip or its unpacked folder).

Which images: per class the first `per_class` train images and the first `val_per_class` val
images, and the first `test` test images, each in natural file-name order (``_2`` before
``_10``, the order :func:`maxvit.data.archive.read_layout` lists them in). No randomness: the
same source gives the same subset. ``--per-class 100 --val-per-class 5 --test 100`` (the
defaults) gives the development mini archive (20,000 train, 1,000 val, 100 test images).

What it holds: ``wnids.txt`` and ``words.txt`` as they are; per class the chosen images under
``train/<wnid>/images/`` and the lines of ``<wnid>_boxes.txt`` that name them; the chosen val
images with their lines of ``val/val_annotations.txt``; the chosen test images. Everything
under ``tiny-imagenet-200/``, as in the official zip, so every command that takes the official
archive takes the subset (``maxvit train --data``, ``maxvit data prepare``, ...).

The output is a zip, written atomically (`maxvit.files.atomic_write`) and byte for byte the same
on every run: entries in sorted order, stored uncompressed (JPEGs gain nothing from deflate),
with a fixed timestamp. This module does not import torch.
"""

from __future__ import annotations

import functools
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from maxvit.data.archive import VAL_ANNOTATIONS, Archive, Layout, open_archive, read_layout
from maxvit.errors import UserError
from maxvit.files import atomic_write

ROOT = "tiny-imagenet-200/"  # the official zip's top folder
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: the same every run


def make_subset(
    source: str | Path,
    out: str | Path,
    *,
    per_class: int = 100,
    val_per_class: int = 5,
    test: int = 100,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Write the subset of the official archive or folder `source` to the zip `out`; return it.

    Raises `UserError` when a count is out of range, a class has fewer images than asked for,
    `out` is not a .zip, or `out` exists (without `force`); `out` is then left untouched.
    """
    out = Path(out).expanduser().absolute()
    if per_class < 1 or val_per_class < 1 or test < 0:
        raise UserError(
            f"--per-class and --val-per-class must be >= 1 and --test >= 0, got {per_class}, "
            f"{val_per_class} and {test}"
        )
    if out.suffix != ".zip":
        raise UserError(f"--out {out} must name a .zip file")
    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it")
    archive = open_archive(source)
    layout = read_layout(archive, None)
    chosen = {
        "train": _first(layout, "train", per_class),
        "val": _first(layout, "val", val_per_class),
        "test": _first(layout, "test", test),
    }
    copied = [name for names in chosen.values() for name in names]
    copied += [name for name in ("wnids.txt", "words.txt") if name in archive.names]
    entries: dict[str, Callable[[], bytes]] = {
        name: functools.partial(archive.read, name) for name in copied
    }
    written = _boxes(archive, layout, chosen["train"])
    written[VAL_ANNOTATIONS] = _lines([layout.val_lines[name] for name in chosen["val"]])
    entries.update((name, functools.partial(bytes, data)) for name, data in written.items())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: _write_zip(tmp, entries))
    if not quiet:
        counts = ", ".join(f"{split} {len(names)}" for split, names in chosen.items())
        print(f"wrote {out}: {len(layout.wnids)} classes; {counts}", file=sys.stderr)
    return out


def _first(layout: Layout, split: str, n: int) -> list[str]:
    """The first `n` images of each class of `split` (of the split for the unlabelled test)."""
    files, labels = layout.files[split], layout.labels[split]
    if split == "test":
        if len(files) < n:
            raise UserError(f"the archive has {len(files)} test images, fewer than --test {n}")
        return files[:n]
    have = Counter(labels)
    short = [(wnid, have[i]) for i, wnid in enumerate(layout.wnids) if have[i] < n]
    if short:
        option = "--per-class" if split == "train" else "--val-per-class"
        (wnid, count), more = short[0], len(short) - 1
        raise UserError(
            f"class {wnid} has {count} {split} images, fewer than {option} {n} "
            f"({more} more class(es) too)"
        )
    taken: Counter[int] = Counter()
    chosen = []
    for name, label in zip(files, labels, strict=True):
        if taken[label] < n:
            taken[label] += 1
            chosen.append(name)
    return chosen


def _boxes(archive: Archive, layout: Layout, train: list[str]) -> dict[str, bytes]:
    """``train/<wnid>/<wnid>_boxes.txt`` of each class, cut to the lines of the chosen images."""
    kept = {PurePosixPath(name).name for name in train}
    boxes = {}
    for wnid in layout.wnids:
        name = f"train/{wnid}/{wnid}_boxes.txt"
        if name in archive.names:
            lines = archive.read(name).decode().splitlines()
            boxes[name] = _lines([line for line in lines if line.split("\t", 1)[0] in kept])
    return boxes


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _write_zip(path: Path, entries: dict[str, Callable[[], bytes]]) -> None:
    """A zip of ``ROOT + name`` -> ``entries[name]()``, read one entry at a time."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(ROOT + name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16  # a regular file, rw-r--r--
            zf.writestr(info, entries[name]())
