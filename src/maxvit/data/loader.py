"""Deterministic, resumable training loaders and sharded evaluation loaders, for every source.

`build_train_loader` and `build_eval_loader` take any data source (`maxvit.data.open_data`):
Tiny ImageNet and class folders load through the batch plans below; WebDataset shards stream
through :mod:`maxvit.data.stream`, which keeps the same interface.

The map-style training loader works batch by batch: for each epoch it builds a *plan*, the list of
(sample indices, pass kind) of every batch of this rank, as a pure function of
(seed, epoch, rank, world_size). A worker turns one plan entry into a batch, drawing every
per-sample random choice from a NumPy generator seeded with (seed, epoch, rank, batch number).
So the batches of an epoch do not depend on the number of workers, and starting at batch k
(``iter_from(k)``) yields exactly the batches k, k+1, ... of an uninterrupted epoch.

Recorded four-pass epoch: the recipe's "four passes concatenated and shuffled with a small
buffer" is read as four passes over the (sharded) train set, each with its own permutation and
its own batches, all batches of the epoch then shuffled together at batch level. Batches are
therefore homogeneous in kind (0 plain, 1 mixup, 2 cutmix, 3 erasing), which is what mixing
within a batch needs, and the kinds are spread evenly over the epoch.

Bad samples: an image that cannot be decoded is left out of its batch (so that batch is
smaller) and counted by `BadSamples`, which names the first few and stops the run when more
than 1% of a split's samples fail.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from maxvit.data.bad import BadSamples
from maxvit.data.datasets import ImageFolderDataset, TinyImageNet
from maxvit.data.sharding import Sharding
from maxvit.data.sources import SHARDS, DataSource, open_data
from maxvit.data.stream import ShardTrainLoader, shard_eval_batches
from maxvit.data.transforms import (
    AugmentConfig,
    TrainTransform,
    check_eval_crop,
    check_img_size,
    decode_crop,
    eval_box,
    one_thread,
    stack_images,
)
from maxvit.errors import UserError

# One plan entry: (epoch, batch number in the epoch, sample indices, pass kind).
BatchSpec = tuple[int, int, np.ndarray, int]


def epoch_plan(
    num_samples: int,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    kinds: tuple[int, ...] = (0,),
    random_kind: bool = False,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> list[tuple[np.ndarray, int]]:
    """The batches (indices, kind) of one epoch for `rank`, a pure function of the arguments.

    One pass per entry of `kinds`, each a fresh permutation, sharded ``rank::world_size`` (cut
    to a multiple of world_size with `drop_last`, else padded by wrapping around, so that every
    rank gets the same number of batches). With several passes the batches are shuffled
    together; with `random_kind` each batch draws its kind from 0-3 instead.
    """
    rng = np.random.default_rng([seed, epoch])
    batches: list[tuple[np.ndarray, int]] = []
    for kind in kinds:
        perm = rng.permutation(num_samples)
        if drop_last:
            perm = perm[: num_samples // world_size * world_size]
        else:
            pad = -num_samples % world_size
            perm = np.concatenate([perm, perm[:pad]])
        shard = perm[rank::world_size]
        stop = len(shard) - len(shard) % batch_size if drop_last else len(shard)
        batches += [(shard[i : i + batch_size], kind) for i in range(0, stop, batch_size)]
    if len(kinds) > 1:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if random_kind:
        drawn = rng.integers(4, size=len(batches))
        batches = [(idx, int(k)) for (idx, _), k in zip(batches, drawn, strict=True)]
    return batches


class _BatchMaker(torch.utils.data.Dataset):
    """Turns a plan entry into (uint8 images, int64 labels, int64 kinds, failures); runs in the
    workers. Folder images are decoded here, straight into their crops."""

    def __init__(
        self,
        dataset: TinyImageNet | ImageFolderDataset,
        transform: TrainTransform,
        seed: int,
        rank: int,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.rank = rank

    def __getitem__(self, spec: BatchSpec) -> tuple[torch.Tensor, ...] | tuple:
        epoch, number, indices, kind = spec
        rng = np.random.default_rng([self.seed, epoch, self.rank, number])
        failed: list[tuple[str, str]] = []
        with one_thread():
            if isinstance(self.dataset, TinyImageNet):
                images = self.transform(self.dataset.fetch(indices), rng)
            else:
                files = [self.dataset.files[i] for i in indices]
                images, kept, failed = self.transform.encoded(files, rng, [str(f) for f in files])
                indices = indices[kept]
        labels = torch.from_numpy(self.dataset.labels[indices].astype(np.int64))
        kinds = torch.full((len(indices),), kind, dtype=torch.int64)
        return images, labels, kinds, failed

    def __len__(self) -> int:
        return len(self.dataset)


class _PlanSampler(torch.utils.data.Sampler):
    """Yields the plan entries from the current start; the loader refills it before each use."""

    def __init__(self) -> None:
        self.items: list[BatchSpec] = []

    def __iter__(self) -> Iterator[BatchSpec]:
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)


class TrainLoader:
    """Training batches of one rank: ``(images uint8 (B,3,h,w), labels int64 (B,), kind int64 (B,))``.

    ``len(loader)`` is the number of batches per epoch, ``set_epoch(e)`` selects the epoch and
    ``iter_from(k)`` starts at batch k (``iter(loader)`` starts at 0). The images are at the
    loader's resolution (:attr:`image_size`); :class:`~maxvit.data.transforms.BatchAugment`
    brings them to the model's size on the device. A batch holding an undecodable image is
    one sample short (see `BadSamples`).
    """

    def __init__(
        self,
        dataset: TinyImageNet | ImageFolderDataset,
        aug: AugmentConfig,
        transform: TrainTransform,
        sharding: Sharding,
        *,
        drop_last: bool,
    ) -> None:
        self.dataset = dataset
        self.aug = aug
        self.sharding = sharding
        self.drop_last = drop_last
        self.num_classes: int = dataset.num_classes
        self.image_size: int = transform.out_size
        self.epoch = 0
        self._plan: tuple[int, list[tuple[np.ndarray, int]]] | None = None
        self._sampler = _PlanSampler()
        s = sharding
        self._bad = BadSamples("train", rank=s.rank, world=s.world_size)
        self._loader = DataLoader(
            _BatchMaker(dataset, transform, s.seed, s.rank),
            batch_size=None,
            sampler=self._sampler,
            num_workers=s.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=s.num_workers > 0,
            prefetch_factor=4 if s.num_workers > 0 else None,
            generator=torch.Generator(),  # the loader's own seed draw leaves the global RNG alone
        )

    def plan(self) -> list[tuple[np.ndarray, int]]:
        """The (indices, kind) of each batch of the current epoch (cached)."""
        if self._plan is None or self._plan[0] != self.epoch:
            s = self.sharding
            batches = epoch_plan(
                len(self.dataset),
                batch_size=s.batch_size,
                seed=s.seed,
                epoch=self.epoch,
                kinds=self.aug.pass_kinds(),
                random_kind=self.aug.random_kind_per_batch(),
                rank=s.rank,
                world_size=s.world_size,
                drop_last=self.drop_last,
            )
            self._plan = (self.epoch, batches)
        return self._plan[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan())

    def iter_from(
        self, start_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches start_batch, start_batch+1, ... of the current epoch."""
        plan = self.plan()
        if not 0 <= start_batch <= len(plan):
            raise ValueError(f"start batch {start_batch} outside 0..{len(plan)}")
        self._sampler.items = [
            (self.epoch, number, indices, kind)
            for number, (indices, kind) in enumerate(plan)
            if number >= start_batch
        ]
        self._bad.expected = sum(len(indices) for indices, _ in plan)
        self._bad.new_epoch()
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for images, labels, kinds, failed in self._loader:
            self._bad.add(len(labels) + len(failed), failed)
            yield images, labels, kinds

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def bad_report(self) -> str | None:
        """A line counting the undecodable samples skipped this epoch, or None."""
        return self._bad.report()


def _source(data: DataSource | str | Path) -> DataSource:
    return data if isinstance(data, DataSource) else open_data(data)


def build_train_loader(
    data: DataSource | str | Path,
    aug: AugmentConfig,
    *,
    batch_size: int,
    img_size: int,
    seed: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> TrainLoader:
    """The training loader of a data source (any layout; a path is opened with `open_data`).

    `batch_size` is per rank; `img_size` is the model's input size (Tiny ImageNet batches come
    at native resolution unless ``aug.resize_first``; see TrainTransform). Shard sources give
    a :class:`maxvit.data.stream.ShardTrainLoader`, which behaves the same.
    """
    sharding = Sharding(batch_size, seed, rank, world_size, num_workers)
    check_img_size(img_size)
    source = _source(data)
    transform = TrainTransform(aug, img_size, source.native_size)
    if source.kind == SHARDS:
        split = source.shard_split("train")
        return ShardTrainLoader(split, source.num_classes, aug, transform, sharding)
    dataset = source.dataset("train")
    per_rank = len(dataset) // world_size if drop_last else math.ceil(len(dataset) / world_size)
    if drop_last and per_rank < batch_size:
        raise UserError(
            f"{len(dataset)} training images give {per_rank} per rank, fewer than the batch size "
            f"{batch_size}; use a smaller batch"
        )
    return TrainLoader(dataset, aug, transform, sharding, drop_last=drop_last)


class _EvalBatches(torch.utils.data.Dataset):
    """Index array -> (uint8 images, labels, failures); folder images are decoded straight into
    the evaluation geometry (resize, centre crop) at `img_size`."""

    def __init__(
        self, dataset: TinyImageNet | ImageFolderDataset, img_size: int, crop: float
    ) -> None:
        self.dataset = dataset
        self.img_size = img_size
        self.box = eval_box(crop, img_size)

    def __getitem__(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list]:
        if isinstance(self.dataset, TinyImageNet):
            images, failed = self.dataset.fetch(indices), []
        else:
            arrays, kept, failed = [], [], []
            with one_thread():
                for i in indices.tolist():
                    name = str(self.dataset.files[i])
                    try:
                        arrays.append(decode_crop(name, name, self.img_size, self.box))
                    except UserError as exc:
                        failed.append((name, str(exc)))
                        continue
                    kept.append(i)
            images, indices = stack_images(arrays, self.img_size), np.asarray(kept, dtype=np.int64)
        return images, torch.from_numpy(self.dataset.labels[indices].astype(np.int64)), failed

    def __len__(self) -> int:
        return len(self.dataset)


class EvalLoader:
    """Evaluation batches ``(uint8 images, int64 labels)`` of one rank, in order.

    Tiny ImageNet batches come at 64x64 and get their geometry on the device
    (``EvalTransform(img_size, crop)``); images of any size come at img_size, already resized
    and centre-cropped (``EvalTransform(img_size, crop=None)``): :attr:`device_crop` says which.
    Undecodable images are left out and counted (`BadSamples`).
    """

    def __init__(self, batches: Iterable, bad: BadSamples, device_crop: float | None) -> None:
        self._batches = batches
        self._bad = bad
        self.device_crop = device_crop

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._bad.new_epoch()
        for images, labels, failed in self._batches:
            self._bad.add(len(labels) + len(failed), failed)
            yield images, labels
        if (line := self._bad.report()) is not None:
            print(line, file=sys.stderr, flush=True)


def build_eval_loader(
    data: DataSource | str | Path,
    split: str,
    *,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    img_size: int = 224,
    crop: float = 1.0,
) -> EvalLoader:
    """Evaluation batches of `split` (uint8 images, int64 labels; -1 for Tiny ImageNet's test).

    Rank r gets samples r, r + world_size, ... (shards: shards r, r + world_size, ...), with no
    padding and no drop, so every sample is seen exactly once across ranks. The geometry is
    the recorded one with `crop` 1.0 (resize to img_size), else resize to img_size / crop and a
    centre crop of img_size.
    """
    sharding = Sharding(batch_size, 0, rank, world_size, num_workers)
    check_img_size(img_size)
    check_eval_crop(crop)
    source = _source(data)
    if source.kind == SHARDS:
        shards = source.shard_split(split)
        expected = None if shards.size is None else shards.size // world_size
        bad = BadSamples(split, expected, rank, world_size)
        batches = shard_eval_batches(shards, source.num_classes, img_size, crop, sharding)
        return EvalLoader(batches, bad, None)
    dataset = source.dataset(split)
    mine = np.arange(rank, len(dataset), world_size)
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    loader = DataLoader(
        _EvalBatches(dataset, img_size, crop),
        batch_size=None,
        sampler=batches,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )
    native = isinstance(dataset, TinyImageNet)
    return EvalLoader(
        loader, BadSamples(split, len(mine), rank, world_size), crop if native else None
    )
