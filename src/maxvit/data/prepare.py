"""Turn the official Tiny ImageNet archive into a compact folder of arrays that loads fast.

``prepare`` reads the official zip directly (no unpacking) or an unpacked copy, validates its
layout (both with :mod:`maxvit.data.archive`), decodes every image once to 64x64 RGB and
writes, per split, ``<split>_images.npy`` (uint8, N x 64 x 64 x 3), ``<split>_labels.npy``
(int64, -1 for the unlabelled test split) and ``<split>_files.txt`` (the source name of each
row), plus ``wnids.txt`` (class order), ``class_names.txt`` (from ``words.txt``) and
``manifest.json`` (counts, sizes, sha256). ``verify`` re-checks such a folder;
``ensure_prepared`` prepares an archive on first use, next to it or in the user's cache.

The output appears atomically (`maxvit.files.staging_dir`): everything is written into
``.<out>.tmp-<pid>`` and renamed to ``<out>`` only when complete, with the manifest written
last, so an interrupted run leaves nothing that looks finished. SIGINT and SIGTERM remove the
unfinished folder and end in one line; one process at a time prepares a folder
(`maxvit.files.folder_lock`); the space the arrays take is checked before decoding starts and
reserved when each is created, so a full disk is one line, never a SIGBUS in a memory-mapped
write. This module does not import torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maxvit.data.archive import HINT, NUM_CLASSES, SPLITS, Archive, open_archive, read_layout
from maxvit.data.images import ImageError, open_image, to_rgb
from maxvit.errors import UserError, signals_interrupt
from maxvit.files import (
    cache_root,
    check_space,
    folder_lock,
    reserve,
    sha256_file,
    staging_dir,
    writable,
    write_json,
    writing,
)

IMAGE_SIZE = 64
MANIFEST = "manifest.json"
FORMAT = "maxvit-tiny-imagenet/1"
_CHUNK = 512  # images per decode task
_ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3 + 8  # an image and its label


# --------------------------------------------------------------------------------------------
# Decoding


def decode_image(data: bytes, name: str) -> tuple[np.ndarray, bool]:
    """JPEG/PNG bytes -> (uint8 64x64x3 RGB array, whether it had to be resized).

    Modes are converted by `maxvit.data.images.to_rgb`; other sizes are resized (bicubic).
    """
    with open_image(data, name) as img:
        rgb = to_rgb(img, name)
        resized = rgb.size != (IMAGE_SIZE, IMAGE_SIZE)
        if resized:
            rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8), resized


@dataclass
class ChunkResult:
    """Outcome of decoding one chunk of a split into its rows of the image array."""

    start: int  # row of the chunk's first image
    failed: list[tuple[int, str]]  # (row, error message); those rows stay zero
    resized: list[int]  # rows whose image was not 64x64


def decode_into(
    source: Archive, array: np.ndarray, start: int, names: Sequence[str]
) -> ChunkResult:
    """Decode `names` into rows start, start+1, ... of `array`."""
    result = ChunkResult(start, [], [])
    for row, name in enumerate(names, start):
        try:
            array[row], was_resized = decode_image(source.read(name), name)
        except ImageError as exc:
            result.failed.append((row, str(exc)))
            continue
        if was_resized:
            result.resized.append(row)
    return result


def _decode_split(
    source: Archive, array: np.ndarray, names: list[str], workers: int
) -> Iterator[ChunkResult]:
    """Decode `names` into `array` in chunks, in order, with `workers` threads.

    Threads rather than processes: PIL decodes and zlib inflates without holding the GIL, and
    threads need no start-up, no pickling and no `if __name__ == "__main__"` guard in callers.
    """
    tasks = [(i, names[i : i + _CHUNK]) for i in range(0, len(names), _CHUNK)]
    if workers <= 1 or len(tasks) <= 1:
        for start, chunk in tasks:
            yield decode_into(source, array, start, chunk)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(lambda task: decode_into(source, array, *task), tasks)


# --------------------------------------------------------------------------------------------
# Writing


def _create_array(path: Path, count: int) -> np.ndarray:
    """A zero-filled uint8 (count, 64, 64, 3) .npy file, memory-mapped for writing, its space
    reserved on disk (a full disk is a `WriteError` here, not a SIGBUS when a row is written)."""
    shape = (count, IMAGE_SIZE, IMAGE_SIZE, 3)
    with writing(path, count * IMAGE_SIZE * IMAGE_SIZE * 3):
        if count == 0:  # an empty file cannot be memory-mapped
            np.save(path, np.zeros(shape, dtype=np.uint8))
            return np.zeros(shape, dtype=np.uint8)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            reserve(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return array


def _write_arrays(
    source: Archive,
    folder: Path,
    split: str,
    names: list[str],
    labels: list[int],
    *,
    skip_bad: bool,
    workers: int,
    progress: Callable[[int], None],
) -> dict:
    """Decode one split into `folder`; returns its manifest record."""
    images_path = folder / f"{split}_images.npy"
    array = _create_array(images_path, len(names))
    failed: list[tuple[int, str]] = []
    resized: list[int] = []
    for result in _decode_split(source, array, names, workers):
        if result.failed and not skip_bad:
            row, err = result.failed[0]
            raise UserError(
                f"corrupt image {names[row]} ({err}); rerun with --skip-bad to leave it out"
            )
        failed += result.failed
        resized += result.resized
        progress(min(_CHUNK, len(names) - result.start))
    if isinstance(array, np.memmap):
        array.flush()
    keep = np.ones(len(names), dtype=bool)
    keep[[row for row, _ in failed]] = False
    if failed:  # rewrite the array without the rows of the skipped images
        compact_path = folder / f"{split}_images.compact.npy"
        compact = _create_array(compact_path, int(keep.sum()))
        compact[:] = array[keep]
        if isinstance(compact, np.memmap):
            compact.flush()
        del compact
        os.replace(compact_path, images_path)
    del array
    with writing(folder / f"{split}_labels.npy"):
        np.save(folder / f"{split}_labels.npy", np.asarray(labels, dtype=np.int64)[keep])
    _write_lines(folder / f"{split}_files.txt", [n for n, k in zip(names, keep, strict=True) if k])
    return {
        "count": int(keep.sum()),
        "labelled": split != "test",
        "skipped": [{"name": names[row], "error": err} for row, err in failed],
        "resized": [names[row] for row in resized],
    }


def _write_lines(path: Path, lines: list[str]) -> None:
    with writing(path):
        path.write_text("".join(f"{line}\n" for line in lines))


def _check_destination(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if (out / MANIFEST).exists():
        if not force:
            raise UserError(f"{out} already holds a prepared data set; pass --force to replace it")
    elif any(out.iterdir()):
        raise UserError(f"{out} exists and is not a prepared data set; choose another --out")


def prepare(
    source: str | Path,
    out: str | Path,
    *,
    expected_classes: int | None = NUM_CLASSES,
    skip_bad: bool = False,
    force: bool = False,
    workers: int | None = None,
    quiet: bool = False,
) -> Path:
    """Validate the official archive/folder `source` and write the prepared form to `out`.

    `expected_classes` is the class count wnids.txt must list (None: any). `skip_bad` leaves
    undecodable images out (each named, and listed in the manifest) instead of failing.
    `workers` decode threads (default: the CPU count, at most 8; one on machines with two CPUs
    or fewer). Returns `out`. Raises UserError on invalid input, a full disk or another process
    preparing `out`, leaving `out` untouched; SIGINT and SIGTERM raise `Interrupted`, after the
    unfinished folder is removed.
    """
    out = Path(out).expanduser().absolute()
    with _interruptible(out), folder_lock(out):
        return _prepare(
            source, out, expected_classes, skip_bad=skip_bad, force=force, workers=workers,
            quiet=quiet,
        )  # fmt: skip


def _interruptible(out: Path) -> contextlib.AbstractContextManager[None]:
    """SIGINT and SIGTERM from the lock to the end of a preparation (reading a large archive's
    layout takes a while) remove the unfinished copy and end in one line."""
    return signals_interrupt(f"preparing {out}; the unfinished copy was removed")


def _prepare(
    source: str | Path,
    out: Path,
    expected_classes: int | None,
    *,
    skip_bad: bool,
    force: bool,
    workers: int | None,
    quiet: bool,
) -> Path:
    """`prepare`, with `out` locked by the caller."""
    from tqdm import tqdm

    _check_destination(out, force)
    if Path(source).is_dir() and (Path(source) / MANIFEST).is_file():
        raise UserError(f"{source} is prepared already: pass it as it is (--data {source})")
    src = open_archive(source)
    layout = read_layout(src, expected_classes)
    if workers is None:  # threads were slower than one on the 2-vCPU machine (docs/data.md)
        cpus = os.cpu_count() or 1
        workers = 1 if cpus <= 2 else min(cpus, 8)
    total = sum(len(v) for v in layout.files.values())
    check_space(out, total * _ROW_BYTES)  # before the decoding, not after
    with staging_dir(out, replace=force) as tmp:
        with tqdm(total=total, unit="img", desc="decode", disable=quiet or None) as bar:
            splits = {
                split: _write_arrays(
                    src,
                    tmp,
                    split,
                    layout.files[split],
                    layout.labels[split],
                    skip_bad=skip_bad,
                    workers=workers,
                    progress=bar.update,
                )
                for split in SPLITS
            }
        _write_lines(tmp / "wnids.txt", layout.wnids)
        _write_lines(tmp / "class_names.txt", layout.class_names)
        files = {
            p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.iterdir())
        }
        manifest = {
            "format": FORMAT,
            "image_size": IMAGE_SIZE,
            "classes": len(layout.wnids),
            "source": src.description,
            "splits": splits,
            "files": files,
        }
        write_json(tmp / MANIFEST, manifest)  # last: a folder without it is not a data set
        _check_destination(out, force)  # it may have appeared while we were decoding
    if not quiet:
        _report(out, splits, len(layout.wnids))
    return out


def _report(out: Path, splits: dict[str, dict], classes: int) -> None:
    counts = ", ".join(f"{s} {splits[s]['count']}" for s in SPLITS)
    print(f"prepared {out}: {classes} classes; {counts}", file=sys.stderr)
    resized = sum(len(s["resized"]) for s in splits.values())
    if resized:
        print(f"{resized} image(s) were not 64x64 and were resized (bicubic)", file=sys.stderr)
    for record in (r for s in splits.values() for r in s["skipped"]):
        print(f"skipped {record['name']}: {record['error']}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Checking a prepared folder


def read_prepared_manifest(folder: str | Path) -> dict:
    """Load the manifest of a prepared folder, checking that its files exist with their sizes.

    This is the cheap check (no hashing) used before every use of the folder.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} is not a prepared data set (no {MANIFEST}); {HINT}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); prepare the data set again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: unknown format; prepare the data set again with this version")
    if not _well_formed(manifest):
        raise UserError(f"{path} is damaged (fields missing or mistyped); prepare it again")
    for name, record in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise UserError(f"{folder}: {name} is missing; prepare the data set again")
        if file.stat().st_size != record["bytes"]:
            raise UserError(f"{folder}: {name} has the wrong size; prepare the data set again")
    return manifest


def _well_formed(manifest: dict) -> bool:
    """The manifest has the fields, of the types, that the checks and the loaders read."""
    try:
        files, splits = manifest["files"].items(), [manifest["splits"][s] for s in SPLITS]
        return isinstance(manifest["classes"], int) and all(
            [isinstance(r["bytes"], int) and isinstance(r["sha256"], str) for _, r in files]
            + [isinstance(name, str) and "/" not in name for name, _ in files]
            + [isinstance(s["count"], int) and isinstance(s["skipped"], list) for s in splits]
        )
    except (KeyError, TypeError, AttributeError):
        return False


def skipped_images(folder: str | Path, split: str) -> list[tuple[str, str]]:
    """(name, error) of each image of `split` that preparing `folder` left out (undecodable)."""
    manifest = read_prepared_manifest(folder)
    return [(r["name"], r["error"]) for r in manifest["splits"][split]["skipped"]]


def is_prepared(folder: str | Path) -> bool:
    try:
        read_prepared_manifest(folder)
    except UserError:
        return False
    return True


def verify(folder: str | Path) -> dict:
    """Re-check a prepared folder: manifest, checksums, array shapes and dtypes, label ranges.

    Returns the manifest; raises UserError naming the first problem.
    """
    folder = Path(folder)
    manifest = read_prepared_manifest(folder)
    for name, record in manifest["files"].items():
        if sha256_file(folder / name) != record["sha256"]:
            raise UserError(f"{folder}: checksum mismatch for {name}; prepare the data set again")
    classes = manifest["classes"]
    wnids = (folder / "wnids.txt").read_text().split()
    names = (folder / "class_names.txt").read_text().splitlines()
    if len(wnids) != classes or len(names) != classes:
        raise UserError(f"{folder}: wnids.txt / class_names.txt do not list {classes} classes")
    for split in SPLITS:
        count = manifest["splits"][split]["count"]
        images = np.load(folder / f"{split}_images.npy", mmap_mode="r")
        labels = np.load(folder / f"{split}_labels.npy", mmap_mode="r")
        if images.dtype != np.uint8 or images.shape != (count, IMAGE_SIZE, IMAGE_SIZE, 3):
            raise UserError(
                f"{folder}: {split}_images.npy is {images.dtype} {images.shape}, "
                f"expected uint8 {(count, IMAGE_SIZE, IMAGE_SIZE, 3)}"
            )
        if labels.dtype != np.int64 or labels.shape != (count,):
            raise UserError(f"{folder}: {split}_labels.npy is {labels.dtype} {labels.shape}")
        if manifest["splits"][split]["labelled"]:
            if count and (labels.min() < 0 or labels.max() >= classes):
                raise UserError(f"{folder}: {split} labels outside 0..{classes - 1}")
        elif count and not (labels == -1).all():
            raise UserError(f"{folder}: {split} is unlabelled but has labels other than -1")
        files = (folder / f"{split}_files.txt").read_text().splitlines()
        if len(files) != count:
            raise UserError(
                f"{folder}: {split}_files.txt lists {len(files)} names, expected {count}"
            )
    return manifest


# --------------------------------------------------------------------------------------------
# Prepared on first use


def prepared_location(source: Path) -> Path:
    """Where `ensure_prepared` keeps the prepared form of an archive or unpacked folder.

    ``<stem>-prepared`` next to the source when that folder is writable, else under
    ``$XDG_CACHE_HOME/maxvit`` (``~/.cache/maxvit``) with a hash of the source path.
    """
    source = source.absolute()
    stem = source.stem if source.is_file() else source.name
    if writable(source.parent):
        return source.parent / f"{stem}-prepared"
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:10]
    return cache_root() / f"{stem}-{digest}-prepared"


def ensure_prepared(data: str | Path) -> Path:
    """A prepared folder for `data`: a prepared folder, the official zip or an unpacked copy.

    A prepared folder is returned as it is (after the cheap manifest check). An archive or
    official folder is prepared on first use (see :func:`prepared_location`) and reused after;
    a process that finds another one preparing it waits for that one and uses its result.
    Undecodable images are left out and named (the loaders hold them to the run's bad-sample
    policy, `maxvit.data.bad`).
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; {HINT}")
    if path.is_dir() and (path / MANIFEST).exists():
        read_prepared_manifest(path)
        return path
    target = prepared_location(path)
    if is_prepared(target):
        return target
    with _interruptible(target), folder_lock(target, wait=True):
        if is_prepared(target):  # prepared by the process we waited for
            return target
        print(f"preparing {path} into {target} (first use)", file=sys.stderr)
        return _prepare(
            path, target, NUM_CLASSES, skip_bad=True, force=target.exists(), workers=None,
            quiet=False,
        )  # fmt: skip
