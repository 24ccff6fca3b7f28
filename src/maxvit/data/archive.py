"""The official Tiny ImageNet archive: read it (the zip in place, or an unpacked copy) and
check its layout.

Layout (paths relative to the archive's ``tiny-imagenet-200/``): ``wnids.txt`` (the class
order), ``words.txt`` (class names), ``train/<wnid>/images/*.JPEG`` with
``train/<wnid>/<wnid>_boxes.txt``, ``val/images/*.JPEG`` with ``val/val_annotations.txt``
(file, wnid, box per line), and the unlabelled ``test/images/*.JPEG``. `read_layout` lists the
images of each split with their labels; :mod:`maxvit.data.prepare` decodes them and
:mod:`maxvit.data.subset` copies a few of them. This module does not import torch.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from maxvit.errors import UserError

NUM_CLASSES = 200
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# The largest file of the official archive is words.txt (2.7 MB); images are a few KB.
MAX_ENTRY_BYTES = 64 * 2**20
VAL_ANNOTATIONS = "val/val_annotations.txt"

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
    val_lines: dict[str, str] = field(default_factory=dict)  # val image -> its annotation line


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
    layout.files["val"] = [n for n, _, _ in val]
    layout.labels["val"] = [label for _, label, _ in val]
    layout.val_lines = {n: line for n, _, line in val}

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


def _read_val(
    source: Archive, names: set[str], index: dict[str, int]
) -> list[tuple[str, int, str]]:
    """(image name, label, annotation line) of each val image, in natural file order."""
    if VAL_ANNOTATIONS not in names:
        raise UserError(f"{source.description}: {VAL_ANNOTATIONS} is missing")
    rows: dict[str, tuple[int, str]] = {}
    text = source.read(VAL_ANNOTATIONS).decode()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"{VAL_ANNOTATIONS} line {lineno}: expected 'file<TAB>wnid ...'")
        file, wnid = fields[0].strip(), fields[1].strip()
        if "/" in file or "\\" in file or file in ("", ".", ".."):
            raise UserError(f"{VAL_ANNOTATIONS} line {lineno}: bad file name {file!r}")
        if wnid not in index:
            raise UserError(f"{VAL_ANNOTATIONS} line {lineno}: class {wnid} is not in wnids.txt")
        if file in rows:
            raise UserError(f"{VAL_ANNOTATIONS} lists {file} twice")
        rows[file] = (index[wnid], line)
    missing = [f for f in rows if f"val/images/{f}" not in names]
    if missing:
        raise UserError(
            f"{source.description}: {VAL_ANNOTATIONS} lists {missing[0]} but "
            f"val/images/{missing[0]} is missing ({len(missing)} missing in all)"
        )
    return [(f"val/images/{f}", *rows[f]) for f in sorted(rows, key=natural_key)]
