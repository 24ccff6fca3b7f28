"""Turn the official Tiny ImageNet archive into a compact folder of arrays that loads fast.

``prepare`` reads the official zip directly (no unpacking) or an unpacked copy, validates its
layout, decodes every image once to 64x64 RGB and writes, per split, ``<split>_images.npy``
(uint8, N x 64 x 64 x 3), ``<split>_labels.npy`` (int64, -1 for the unlabelled test split) and
``<split>_files.txt`` (the source name of each row), plus ``wnids.txt`` (class order),
``class_names.txt`` (from ``words.txt``) and ``manifest.json`` (counts, sizes, sha256).

The output appears atomically (`maxvit.files.staging_dir`): everything is written into
``.<out>.tmp-<pid>`` and renamed to ``<out>`` only when complete, with the manifest written
last, so an interrupted run leaves nothing that looks finished. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from maxvit.data.images import ImageError, open_image, to_rgb
from maxvit.errors import UserError
from maxvit.files import sha256_file, staging_dir, write_json

IMAGE_SIZE = 64
NUM_CLASSES = 200
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FORMAT = "maxvit-tiny-imagenet/1"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_CHUNK = 512  # images per decode task
# The largest file of the official archive is words.txt (2.7 MB); images are a few KB.
MAX_ENTRY_BYTES = 64 * 2**20

HINT = (
    "get the archive with `maxvit data download` and prepare it with "
    "`maxvit data prepare --source ZIP --out DIR`"
)


def natural_key(name: str) -> list[object]:
    """Sort key that puts img_2 before img_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------------------------
# Archives: the official zip, or an unpacked copy of it


class Archive:
    """Read access to the files of an official Tiny ImageNet tree (paths relative to its root)."""

    description: str
    names: list[str]

    def read(self, name: str) -> bytes:
        raise NotImplementedError


class ZipArchive(Archive):
    """The official archive, read in place. Entries with absolute paths or '..' are refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        try:
            with zipfile.ZipFile(path) as zf:
                entries = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"cannot read {path} as a zip archive: {exc}") from None
        for entry in entries:
            check_entry_name(entry, path)
        roots = [e[: -len("wnids.txt")] for e in entries if PurePosixPath(e).name == "wnids.txt"]
        if not roots:
            raise UserError(f"{path} has no wnids.txt: not the official Tiny ImageNet layout")
        self.prefix = min(roots, key=len)
        self.names = [e[len(self.prefix) :] for e in entries if e.startswith(self.prefix)]
        self._local = threading.local()

    def read(self, name: str) -> bytes:
        """The entry's bytes, refusing entries far larger than any file of the data set (the
        declared size first, then the real one while streaming, so memory stays bounded)."""
        zf = getattr(self._local, "zip", None)
        if zf is None:  # one handle per thread, so that reads run in parallel
            zf = self._local.zip = zipfile.ZipFile(self.path)
        info = zf.getinfo(self.prefix + name)
        if info.file_size > MAX_ENTRY_BYTES:
            raise UserError(
                f"{self.path}: entry {info.filename} declares {info.file_size:,} bytes, far more "
                f"than any file of Tiny ImageNet (limit {MAX_ENTRY_BYTES:,}); refusing it"
            )
        with zf.open(info) as f:
            data = f.read(MAX_ENTRY_BYTES + 1)
        if len(data) > MAX_ENTRY_BYTES:
            raise UserError(
                f"{self.path}: entry {info.filename} holds more than {MAX_ENTRY_BYTES:,} bytes "
                "(more than it declares); refusing it"
            )
        return data


class DirArchive(Archive):
    """An unpacked official tree (the folder with wnids.txt, or its parent)."""

    def __init__(self, path: Path) -> None:
        root = path if (path / "wnids.txt").is_file() else path / "tiny-imagenet-200"
        if not (root / "wnids.txt").is_file():
            raise UserError(f"{path} has no wnids.txt: not the official Tiny ImageNet layout")
        self.root = root.resolve()
        self.description = str(path)
        self.names = sorted(
            (Path(d) / f).relative_to(self.root).as_posix()
            for d, _, files in os.walk(self.root)
            for f in files
        )

    def read(self, name: str) -> bytes:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise UserError(
                f"{name} points outside {self.root} (symbolic link); refusing to read it"
            )
        return path.read_bytes()


def check_entry_name(name: str, archive: Path) -> None:
    """Refuse archive entries that could escape a destination folder."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in posix.split("/"):
        raise UserError(
            f"unsafe path in archive {archive}: {name!r} (absolute paths and '..' are not allowed)"
        )


def open_archive(path: str | Path) -> Archive:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; {HINT}")
    if path.is_dir():
        return DirArchive(path)
    return ZipArchive(path)


# --------------------------------------------------------------------------------------------
# Layout validation


@dataclass
class Layout:
    """What the source holds, validated: class order and the image list of each split."""

    wnids: list[str]
    class_names: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)  # split -> image names
    labels: dict[str, list[int]] = field(default_factory=dict)  # split -> class index (-1: none)


def _is_image(name: str) -> bool:
    base = PurePosixPath(name).name
    return name.lower().endswith(IMAGE_SUFFIXES) and not base.startswith("._")


def read_layout(source: Archive, expected_classes: int | None = NUM_CLASSES) -> Layout:
    """Check the official layout and list every image with its label.

    Raises UserError on: a class count different from `expected_classes`, duplicate wnids, a
    listed class without train images, a train class folder not listed in wnids.txt, a val
    annotation for an unknown class or a missing image.
    """
    names = set(source.names)
    wnids = source.read("wnids.txt").decode().split()
    if not wnids:
        raise UserError(f"{source.description}: wnids.txt is empty")
    if len(set(wnids)) != len(wnids):
        raise UserError(f"{source.description}: wnids.txt lists a class twice")
    if expected_classes is not None and len(wnids) != expected_classes:
        raise UserError(
            f"{source.description}: wnids.txt lists {len(wnids)} classes, expected {expected_classes}"
        )
    index = {w: i for i, w in enumerate(wnids)}
    layout = Layout(wnids=wnids, class_names=_class_names(source, names, wnids))

    train: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if parts[0] == "train" and len(parts) >= 3:
            train.setdefault(parts[1], [])
            if len(parts) == 4 and parts[2] == "images" and _is_image(name):
                train[parts[1]].append(name)
    unknown = sorted(set(train) - set(index))
    if unknown:
        raise UserError(
            f"{source.description}: train/{unknown[0]} is not listed in wnids.txt "
            f"({len(unknown)} such class folder(s))"
        )
    missing = [w for w in wnids if not train.get(w)]
    if missing:
        raise UserError(
            f"{source.description}: no images in train/{missing[0]}/images "
            f"({len(missing)} of the {len(wnids)} classes in wnids.txt have none)"
        )
    layout.files["train"] = [n for w in wnids for n in sorted(train[w], key=natural_key)]
    layout.labels["train"] = [index[w] for w in wnids for _ in train[w]]

    val = _read_val(source, names, index)
    layout.files["val"] = [n for n, _ in val]
    layout.labels["val"] = [label for _, label in val]

    test = sorted(
        (n for n in names if n.startswith("test/images/") and _is_image(n)), key=natural_key
    )
    layout.files["test"] = test
    layout.labels["test"] = [-1] * len(test)
    return layout


def _class_names(source: Archive, names: set[str], wnids: list[str]) -> list[str]:
    """Human-readable names from words.txt (the wnid itself where it has none)."""
    words: dict[str, str] = {}
    if "words.txt" in names:
        for line in source.read("words.txt").decode().splitlines():
            wnid, _, text = line.partition("\t")
            if wnid and text:
                words[wnid.strip()] = text.strip()
    else:
        print("warning: no words.txt; class names are the wnids", file=sys.stderr)
    return [words.get(w, w) for w in wnids]


def _read_val(source: Archive, names: set[str], index: dict[str, int]) -> list[tuple[str, int]]:
    if "val/val_annotations.txt" not in names:
        raise UserError(f"{source.description}: val/val_annotations.txt is missing")
    rows: dict[str, int] = {}
    text = source.read("val/val_annotations.txt").decode()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"val/val_annotations.txt line {lineno}: expected 'file<TAB>wnid ...'")
        file, wnid = fields[0].strip(), fields[1].strip()
        if "/" in file or "\\" in file or file in ("", ".", ".."):
            raise UserError(f"val/val_annotations.txt line {lineno}: bad file name {file!r}")
        if wnid not in index:
            raise UserError(
                f"val/val_annotations.txt line {lineno}: class {wnid} is not in wnids.txt"
            )
        if file in rows:
            raise UserError(f"val/val_annotations.txt lists {file} twice")
        rows[file] = index[wnid]
    missing = [f for f in rows if f"val/images/{f}" not in names]
    if missing:
        raise UserError(
            f"{source.description}: val/val_annotations.txt lists {missing[0]} but "
            f"val/images/{missing[0]} is missing ({len(missing)} missing in all)"
        )
    return [(f"val/images/{f}", rows[f]) for f in sorted(rows, key=natural_key)]


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
    """A zero-filled uint8 (count, 64, 64, 3) .npy file, memory-mapped for writing."""
    shape = (count, IMAGE_SIZE, IMAGE_SIZE, 3)
    if count == 0:  # an empty file cannot be memory-mapped
        np.save(path, np.zeros(shape, dtype=np.uint8))
        return np.zeros(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def _write_split(
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
    np.save(folder / f"{split}_labels.npy", np.asarray(labels, dtype=np.int64)[keep])
    (folder / f"{split}_files.txt").write_text(
        "".join(f"{n}\n" for n, k in zip(names, keep, strict=True) if k)
    )
    return {
        "count": int(keep.sum()),
        "labelled": split != "test",
        "skipped": [{"name": names[row], "error": err} for row, err in failed],
        "resized": [names[row] for row in resized],
    }


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

    `expected_classes` is the class count wnids.txt must list (None: any). `workers` decode
    threads (default: the CPU count, at most 8; one on machines with two CPUs or fewer).
    Returns `out`. Raises UserError on invalid input, leaving `out` untouched.
    """
    from tqdm import tqdm

    out = Path(out).expanduser().absolute()
    _check_destination(out, force)
    src = open_archive(source)
    layout = read_layout(src, expected_classes)
    if workers is None:  # threads were slower than one on the 2-vCPU machine (docs/data.md)
        cpus = os.cpu_count() or 1
        workers = 1 if cpus <= 2 else min(cpus, 8)
    total = sum(len(v) for v in layout.files.values())
    with staging_dir(out, replace=force) as tmp:
        with tqdm(total=total, unit="img", desc="decode", disable=quiet or None) as bar:
            splits = {
                split: _write_split(
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
        (tmp / "wnids.txt").write_text("".join(f"{w}\n" for w in layout.wnids))
        (tmp / "class_names.txt").write_text("".join(f"{n}\n" for n in layout.class_names))
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
    skipped = [r for s in splits.values() for r in s["skipped"]]
    if skipped:
        print(
            f"skipped {len(skipped)} corrupt image(s), e.g. {skipped[0]['name']} (listed in {MANIFEST})",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------------------------
# Checking a prepared folder


def read_manifest(folder: str | Path) -> dict:
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
    for name, record in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise UserError(f"{folder}: {name} is missing; prepare the data set again")
        if file.stat().st_size != record["bytes"]:
            raise UserError(f"{folder}: {name} has the wrong size; prepare the data set again")
    return manifest


def is_prepared(folder: str | Path) -> bool:
    try:
        read_manifest(folder)
    except UserError:
        return False
    return True


def verify(folder: str | Path) -> dict:
    """Re-check a prepared folder: manifest, checksums, array shapes and dtypes, label ranges.

    Returns the manifest; raises UserError naming the first problem.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
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


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "maxvit"


def _writable(folder: Path) -> bool:
    """Writable for us and not marked read-only: root passes `os.access` on any folder, so a
    folder without any write permission bit (a read-only data share) also counts as read-only."""
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & 0o222)


def prepared_location(source: Path) -> Path:
    """Where `ensure_prepared` keeps the prepared form of an archive or unpacked folder.

    ``<stem>-prepared`` next to the source when that folder is writable, else under
    ``$XDG_CACHE_HOME/maxvit`` (``~/.cache/maxvit``) with a hash of the source path.
    """
    source = source.absolute()
    stem = source.stem if source.is_file() else source.name
    if _writable(source.parent):
        return source.parent / f"{stem}-prepared"
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:10]
    return _cache_root() / f"{stem}-{digest}-prepared"


def ensure_prepared(data: str | Path) -> Path:
    """A prepared folder for `data`: a prepared folder, the official zip or an unpacked copy.

    A prepared folder is returned as it is (after the cheap manifest check). An archive or
    official folder is prepared on first use (see :func:`prepared_location`) and reused after.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; {HINT}")
    if path.is_dir() and (path / MANIFEST).exists():
        read_manifest(path)
        return path
    target = prepared_location(path)
    if is_prepared(target):
        return target
    print(f"preparing {path} into {target} (first use)", file=sys.stderr)
    try:
        return prepare(path, target, force=target.exists())
    except UserError:
        if is_prepared(target):  # another process (e.g. another rank) finished it first
            return target
        raise
