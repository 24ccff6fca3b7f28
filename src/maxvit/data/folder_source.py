"""Class folders as a data source: ``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>``
(torchvision's ImageFolder layout, as ImageNet-1K is usually unpacked), images of any size.

A class folder whose name holds a newline or another control character is refused (the class
ids are lines of ``classes.txt`` and of messages); an empty train class folder and a data set
of one class each get a one-line warning. Opening one imports no torch."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from maxvit.data.images import image_files
from maxvit.data.items import Item, ext_of
from maxvit.data.source import LAYOUTS, MapSource
from maxvit.errors import UserError

if TYPE_CHECKING:
    from maxvit.data.datasets import ImageFolderDataset


@dataclass(frozen=True)
class FolderSource(MapSource):
    """A class-per-folder tree; `location` is its root, the classes are the sorted sub-folders
    of ``train/``."""

    kind: ClassVar[str] = "class-folders"

    @classmethod
    def open(cls, root: Path) -> FolderSource:
        classes = _class_folders(root / "train")
        if not classes:
            raise UserError(f"{root}/train has no class folders; {LAYOUTS}")
        if not (root / "val").is_dir():
            raise UserError(f"{root} has train/ but no val/ folder (ROOT/val/<class>/<image>)")
        _class_folders(root / "val")
        _warn_about(root / "train", classes)
        unknown = sorted(
            p.name for p in (root / "val").iterdir() if p.is_dir() and p.name not in set(classes)
        )
        if unknown:
            raise UserError(
                f"{root}/val/{unknown[0]} has no train/ folder of the same name "
                f"({len(unknown)} such class folder(s))"
            )
        return cls(str(root.absolute()), tuple(classes), tuple(classes))

    def has_split(self, split: str) -> bool:
        return (Path(self.location) / split).is_dir()

    def dataset(self, split: str) -> ImageFolderDataset:
        from maxvit.data.datasets import ImageFolderDataset  # torch: only once a split is loaded

        if not self.has_split(split):
            raise UserError(f"{self.location} has no {split}/ folder")
        return ImageFolderDataset(Path(self.location) / split, classes=self.classes)

    def items(self, split: str) -> Iterator[Item]:
        dataset = self.dataset(split)
        for path, label in zip(dataset.files, dataset.labels.tolist(), strict=True):
            yield Item(str(path), ext_of(path.name), int(label), read=path.read_bytes)


def _class_folders(split: Path) -> list[str]:
    """The sorted class folder names in `split`; `UserError` naming one whose name holds a
    newline or another control character."""
    names = sorted(p.name for p in split.iterdir() if p.is_dir())
    for name in names:
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
            raise UserError(
                f"class folder {name!r} in {split} has a newline or other control character in "
                "its name; rename it"
            )
    return names


def _warn_about(train: Path, classes: list[str]) -> None:
    """One line each for train class folders without images and for a single class."""
    empty = [c for c in classes if next(image_files(train / c), None) is None]
    if empty:
        print(
            f"warning: {train / empty[0]} holds no images: the model gets a class it never "
            f"sees ({len(empty)} empty class folder(s))",
            file=sys.stderr,
        )
    if len(classes) == 1:
        print(
            f"warning: {train} holds one class ({classes[0]}): a one-class model is right "
            "whatever it predicts",
            file=sys.stderr,
        )
