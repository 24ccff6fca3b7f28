"""Tiny ImageNet as a data source: a prepared folder of 64x64 arrays (:mod:`maxvit.data.prepare`),
prepared on first use from the official archive or its unpacked folder. Opening one imports
no torch."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from maxvit.data.archive import SPLITS, open_archive, read_layout
from maxvit.data.items import Item, ext_of
from maxvit.data.prepare import MANIFEST, ensure_prepared, verify
from maxvit.data.source import MapSource, Verified

if TYPE_CHECKING:
    from maxvit.data.datasets import TinyImageNet


@dataclass(frozen=True)
class TinySource(MapSource):
    """Tiny ImageNet: `location` is the prepared folder; `archive` the official archive or
    unpacked folder it was given as (None when given as a prepared folder)."""

    kind: ClassVar[str] = "tiny-imagenet"
    native_size: ClassVar[int | None] = 64

    archive: Path | None = None

    @classmethod
    def open(cls, path: Path) -> TinySource:
        """A prepared folder, the official zip or its unpacked folder (prepared on first use)."""
        root = ensure_prepared(path)
        classes = (root / "wnids.txt").read_text().split()
        names = (root / "class_names.txt").read_text().splitlines()
        archive = None if (path.is_dir() and (path / MANIFEST).exists()) else path
        return cls(str(root), tuple(classes), tuple(names), archive)

    def has_split(self, split: str) -> bool:
        return split in SPLITS

    def dataset(self, split: str) -> TinyImageNet:
        from maxvit.data.datasets import TinyImageNet  # torch: only once a split is loaded

        return TinyImageNet(self.location, split)

    def items(self, split: str) -> Iterator[Item]:
        """The archive's own JPEGs when it was given, else PNGs of the prepared arrays."""
        if self.archive is not None:
            archive = open_archive(self.archive)
            layout = read_layout(archive, None)
            for name, label in zip(layout.files[split], layout.labels[split], strict=True):
                yield Item(name, ext_of(name), label, read=functools.partial(archive.read, name))
            return
        dataset = self.dataset(split)
        names = (Path(self.location) / f"{split}_files.txt").read_text().splitlines()
        for i, name in enumerate(names):
            png = functools.partial(_png, dataset.images, i)
            yield Item(name, "png", int(dataset.labels[i]), read=png)

    def verify(self, workers: int) -> Verified:
        """The prepared folder's manifest, checksums, shapes and labels (`prepare.verify`)."""
        manifest = verify(self.location)
        counts = {s: manifest["splits"][s]["count"] for s in SPLITS}
        listed = ", ".join(f"{s} {n}" for s, n in counts.items())
        summary = f"{manifest['classes']} classes; {listed}; checksums match"
        return Verified(summary, sum(counts.values()), [])


def _png(images: np.ndarray, row: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(images[row])).save(buffer, format="PNG")
    return buffer.getvalue()
