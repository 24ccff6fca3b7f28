"""Where the data is and which layout it has: the one reader of ``--data`` / ``--source``.

`open_data` looks at what the path holds and returns a `DataSource`:

=================  ==========================================================================
layout             given as
=================  ==========================================================================
Tiny ImageNet      the official zip, its unpacked folder, a prepared folder, or a folder that
                   holds one of these under its official name (``data/`` after
                   ``maxvit data download``); archives are prepared on first use
class folders      ``ROOT`` with ``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>``
                   (torchvision's ImageFolder layout, as ImageNet-1K is usually unpacked)
WebDataset shards  a folder with ``train-*.tar``, ``val-*.tar`` and ``classes.txt``; or a brace
                   pattern, URL or ``pipe:`` command naming the shards of both splits
=================  ==========================================================================

Anything else is a `UserError` naming these layouts. Downloading is never implicit: only
``open_data(..., download=True)`` fetches Tiny ImageNet, into the folder given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from maxvit.data.shards import (
    ShardSplit,
    beside,
    is_shard_pattern,
    read_manifest,
    read_text,
    shard_counts,
    shard_name,
    split_of,
)
from maxvit.errors import UserError

if TYPE_CHECKING:
    from maxvit.data.datasets import ImageFolderDataset, TinyImageNet

TINY, FOLDERS, SHARDS = "tiny-imagenet", "class-folders", "shards"
OFFICIAL_NAME = "tiny-imagenet-200"
LAYOUTS = (
    "accepted layouts: Tiny ImageNet (the official zip, its unpacked folder or a prepared "
    "folder), class folders (ROOT/train/<class>/<image> and ROOT/val/<class>/<image>), "
    "WebDataset shards (a folder with train-*.tar, val-*.tar and classes.txt, or a brace "
    "pattern, URL or pipe: command)"
)

DOWNLOAD_HINT = "Tiny ImageNet comes with `maxvit data download` (or `maxvit train --download`)"


@dataclass(frozen=True)
class DataSource:
    """A located, validated data set: its layout, classes and splits."""

    kind: str  # TINY, FOLDERS or SHARDS
    location: str  # prepared folder, tree root, shard folder or shard pattern
    classes: tuple[str, ...]  # class ids (wnids, folder names, classes.txt) in label order
    class_names: tuple[str, ...]  # human-readable names in label order
    shards: dict[str, ShardSplit] | None = None  # SHARDS only: the shards of each split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def native_size(self) -> int | None:
        """The side every image has (64 for Tiny ImageNet), or None for images of any size."""
        return 64 if self.kind == TINY else None

    def has_split(self, split: str) -> bool:
        if self.kind == SHARDS:
            return split in self.shards
        if self.kind == FOLDERS:
            return (Path(self.location) / split).is_dir()
        return True

    def dataset(self, split: str) -> TinyImageNet | ImageFolderDataset:
        """The map-style dataset of `split` (Tiny ImageNet and class folders)."""
        from maxvit.data.datasets import ImageFolderDataset, TinyImageNet

        if self.kind == TINY:
            return TinyImageNet(self.location, split)
        if self.kind == FOLDERS:
            folder = Path(self.location) / split
            if not folder.is_dir():
                raise UserError(f"{self.location} has no {split}/ folder")
            return ImageFolderDataset(folder, classes=self.classes)
        raise ValueError("shard data sets have no map-style dataset; use shard_split()")

    def shard_split(self, split: str) -> ShardSplit:
        """The shards of `split` (SHARDS only)."""
        if self.shards is None:
            raise ValueError(f"{self.location} is not a shard data set")
        if split not in self.shards:
            raise UserError(f"{self.location} has no {split} shards")
        return self.shards[split]

    def describe(self) -> str:
        return f"{self.location} ({self.kind}, {self.num_classes} classes)"


def open_data(spec: str | Path, *, download: bool = False) -> DataSource:
    """Locate and validate the data set `spec` names (see the module docstring).

    Tiny ImageNet archives are prepared on first use. With `download`, a folder (or a path that
    does not exist yet) holding no data set gets the official Tiny ImageNet archive first.
    """
    text = str(spec)
    if is_shard_pattern(text):
        return open_shards(text)
    path = Path(text).expanduser()
    if path.is_dir() and _is_shard_folder(path):
        return open_shards(path)
    if path.is_dir() and (path / "train").is_dir() and not _is_tiny(path):
        return _open_folders(path)
    tiny = _tiny_in(path)
    if tiny is None and download:
        tiny = _download_into(path)
    if tiny is None:
        what = "does not exist" if not path.exists() else "holds no data set of a known layout"
        raise UserError(f"{path} {what}; {LAYOUTS}; {DOWNLOAD_HINT}")
    return _open_tiny(tiny)


def _is_tiny(path: Path) -> bool:
    """A prepared folder or an unpacked official copy (not a folder that holds one)."""
    from maxvit.data.prepare import MANIFEST

    return (path / "wnids.txt").exists() or (path / MANIFEST).exists()


def _is_shard_folder(path: Path) -> bool:
    return any(path.glob("train-*.tar")) or any(path.glob("val-*.tar"))


def _tiny_in(path: Path) -> Path | None:
    """The Tiny ImageNet archive or folder `path` is or holds, if any."""
    if path.is_file() and path.suffix == ".zip":
        return path
    if not path.is_dir():
        return None
    if _is_tiny(path):
        return path
    for name in (f"{OFFICIAL_NAME}-prepared", f"{OFFICIAL_NAME}.zip", OFFICIAL_NAME):
        if (path / name).exists():
            return path / name
    return None


def _download_into(path: Path) -> Path:
    from maxvit.data.download import OFFICIAL_URL, download

    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is not a folder to download Tiny ImageNet into; {LAYOUTS}")
    try:
        return download(OFFICIAL_URL, path)
    except UserError as exc:
        raise UserError(
            f"cannot download Tiny ImageNet ({exc}); pass a local copy with --data PATH "
            "(make train DATA=PATH)"
        ) from None


def _open_tiny(path: Path) -> DataSource:
    from maxvit.data.prepare import ensure_prepared

    root = ensure_prepared(path)
    classes = (root / "wnids.txt").read_text().split()
    names = (root / "class_names.txt").read_text().splitlines()
    return DataSource(TINY, str(root), tuple(classes), tuple(names))


def open_shards(spec: str | Path) -> DataSource:
    """The shard data set in folder `spec`, or named by the pattern `spec` (see module doc)."""
    import braceexpand

    if isinstance(spec, Path):
        folder = spec.absolute()
        urls = sorted(str(p) for p in folder.glob("*.tar") if split_of(p.name))
        location = str(folder)
    else:
        urls = [u for part in spec.split("::") for u in braceexpand.braceexpand(part)]
        location = spec
    by_split: dict[str, list[str]] = {}
    for url in urls:
        split = split_of(shard_name(url))
        if split is None:
            raise UserError(
                f"cannot tell the split of shard {shard_name(url)}: shard names start with "
                "train or val (train-000000.tar)"
            )
        by_split.setdefault(split, []).append(url)
    if "train" not in by_split and "val" not in by_split:
        raise UserError(f"{location} names no train-*.tar or val-*.tar shards; {LAYOUTS}")
    first = next(iter(by_split.values()))[0]
    try:
        classes = [c.strip() for c in read_text(beside(first, "classes.txt")).splitlines()]
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot read classes.txt beside the shards ({beside(first, 'classes.txt')}): {exc}"
        ) from None
    classes = [c for c in classes if c]
    if not classes or len(set(classes)) != len(classes):
        raise UserError(f"{beside(first, 'classes.txt')} must list distinct class names")
    manifest = read_manifest(beside(first, "manifest.json"))
    counts = shard_counts(manifest)
    shards = {}
    for split, split_urls in by_split.items():
        known = [counts.get(shard_name(u)) for u in split_urls]
        shards[split] = ShardSplit(tuple(split_urls), tuple(known) if None not in known else None)
    names = manifest.get("class_names") if manifest else None
    if not (isinstance(names, list) and len(names) == len(classes)):
        names = classes
    return DataSource(SHARDS, location, tuple(classes), tuple(names), shards)


def _open_folders(root: Path) -> DataSource:
    """A class-per-folder tree: classes are the sorted sub-folders of ``train/``."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{root}/train has no class folders; {LAYOUTS}")
    if not (root / "val").is_dir():
        raise UserError(f"{root} has train/ but no val/ folder (ROOT/val/<class>/<image>)")
    unknown = sorted(
        p.name for p in (root / "val").iterdir() if p.is_dir() and p.name not in set(classes)
    )
    if unknown:
        raise UserError(
            f"{root}/val/{unknown[0]} has no train/ folder of the same name "
            f"({len(unknown)} such class folder(s))"
        )
    return DataSource(FOLDERS, str(root.absolute()), tuple(classes), tuple(classes))
