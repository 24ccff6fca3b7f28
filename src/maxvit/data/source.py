"""What every data source offers, whatever its layout: `DataSource`, and `MapSource` for the
layouts read by sample index.

One subclass per layout, each in its own module: `TinySource` (Tiny ImageNet,
:mod:`maxvit.data.tiny_source`), `FolderSource` (class folders, :mod:`maxvit.data.folder_source`),
`ShardSource` (WebDataset shards, :mod:`maxvit.data.shard_source`) and the Hugging Face layouts
(:mod:`maxvit.data.hf_source`). A new layout is one more
subclass with an ``open`` class method, and one line in `maxvit.data.sources.open_data`, which
tells the layouts apart.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from maxvit.data.items import Item, checked
from maxvit.errors import UserError

if TYPE_CHECKING:
    import torch

    from maxvit.data.augment_config import AugmentConfig
    from maxvit.data.crop import TrainTransform
    from maxvit.data.datasets import ImageFolderDataset, TinyImageNet
    from maxvit.data.plan_loader import TrainLoader
    from maxvit.data.sharding import Sharding
    from maxvit.data.stream import ShardTrainLoader

    EvalChunks = Iterable[tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]]

LAYOUTS = (
    "accepted layouts: Tiny ImageNet (the official zip, its unpacked folder or a prepared "
    "folder), class folders (ROOT/train/<class>/<image> and ROOT/val/<class>/<image>), "
    "WebDataset shards (a folder with train-*.tar, val-*.tar and classes.txt, or a brace "
    "pattern, URL or pipe: command), Hugging Face datasets (Hub-layout parquet files or a "
    "save_to_disk folder)"
)
LABELLED_SPLITS = ("train", "val")  # what `verify` decodes and `maxvit data shard` writes
# (Tiny ImageNet's unlabelled test split has no place in shards)


@dataclass(frozen=True)
class Verified:
    """What `DataSource.verify` found."""

    summary: str  # what was checked, for the line `PATH: OK (summary)`
    checked: int  # entries checked
    bad: list[tuple[str, str]]  # (name, problem) of each bad entry


@dataclass(frozen=True)
class DataSource(ABC):
    """A located, validated data set: its classes, its splits and how to load them."""

    kind: ClassVar[str]  # the layout's name in messages
    native_size: ClassVar[int | None] = None  # the side of every image (None: any size)
    shuffle_to_shard: ClassVar[bool] = True  # `maxvit data shard` shuffles train first

    location: str  # prepared folder, tree root, shard folder or shard pattern
    classes: tuple[str, ...]  # class ids (wnids, folder names, classes.txt) in label order
    class_names: tuple[str, ...]  # human-readable names in label order

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        return f"{self.location} ({self.kind}, {self.num_classes} classes)"

    @abstractmethod
    def has_split(self, split: str) -> bool: ...

    @abstractmethod
    def count(self, split: str) -> int | None:
        """Samples in `split` (0 where there is no such split; None when unknown)."""

    @abstractmethod
    def items(self, split: str) -> Iterator[Item]:
        """The samples of `split` as encoded bytes, in source order (to shard or verify)."""

    @abstractmethod
    def train_loader(
        self, aug: AugmentConfig, transform: TrainTransform, sharding: Sharding, *, drop_last: bool
    ) -> TrainLoader | ShardTrainLoader:
        """The training loader of this rank (see `maxvit.data.loader.build_train_loader`)."""

    @abstractmethod
    def eval_batches(
        self, split: str, img_size: int, crop: float, sharding: Sharding, every: int = 1
    ) -> tuple[EvalChunks, int | None]:
        """This rank's evaluation chunks (uint8 images, labels, failures), and how many samples
        they hold (None when unknown). Images of any size come at img_size with the evaluation
        geometry; those of a `native_size` come as they are, for the device to transform.
        `every` > 1: only every `every`-th sample of the split (a fixed subset spread over the
        classes), where the layout is read by index."""

    def verify(self, workers: int) -> Verified:
        """Decode every image of train and val (`maxvit data verify`)."""
        bad, count = [], 0
        for split in LABELLED_SPLITS:
            if self.has_split(split):
                for item, problem in checked(self.items(split), workers):
                    count += 1
                    if problem is not None:
                        bad.append((item.name, problem))
        return self._decoded(count, bad)

    def _decoded(self, count: int, bad: list[tuple[str, str]]) -> Verified:
        """What `verify` found after decoding `count` images."""
        return Verified(
            f"{self.kind}, {self.num_classes} classes, {count} images decode", count, bad
        )


class MapSource(DataSource):
    """A layout read by sample index, through a map-style dataset per split
    (:mod:`maxvit.data.datasets`) and the batch plans of :mod:`maxvit.data.plan_loader`."""

    @abstractmethod
    def dataset(self, split: str) -> TinyImageNet | ImageFolderDataset: ...

    def count(self, split: str) -> int:
        return len(self.dataset(split)) if self.has_split(split) else 0

    def train_loader(
        self, aug: AugmentConfig, transform: TrainTransform, sharding: Sharding, *, drop_last: bool
    ) -> TrainLoader:
        from maxvit.data.plan_loader import TrainLoader

        dataset = self.dataset("train")
        n, world = len(dataset), sharding.world_size
        per_rank = n // world if drop_last else math.ceil(n / world)
        if drop_last and per_rank < sharding.batch_size:
            raise UserError(
                f"{n} training images give {per_rank} per rank, fewer than the batch size "
                f"{sharding.batch_size}; use a smaller batch"
            )
        return TrainLoader(dataset, aug, transform, sharding, drop_last=drop_last)

    def eval_batches(
        self, split: str, img_size: int, crop: float, sharding: Sharding, every: int = 1
    ) -> tuple[EvalChunks, int]:
        from maxvit.data.plan_loader import eval_batches

        return eval_batches(self.dataset(split), img_size, crop, sharding, every)
