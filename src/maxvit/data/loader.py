"""Deterministic, resumable training loader and sharded evaluation loader.

The training loader works batch by batch: for each epoch it builds a *plan*, the list of
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
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from maxvit.data.datasets import ImageFolderDataset, TinyImageNet, open_split
from maxvit.data.transforms import AugmentConfig, TrainTransform, check_img_size
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


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread inside (loader workers already do; this covers num_workers=0).

    The per-sample ops work on many small images: splitting each across threads costs more
    than it gains (measured 20x slower for a batch of 16 at 64x64 on a busy 2-vCPU machine).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _BatchMaker(torch.utils.data.Dataset):
    """Turns a plan entry into (uint8 images, int64 labels, int64 kinds); runs in the workers."""

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

    def __getitem__(self, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, number, indices, kind = spec
        rng = np.random.default_rng([self.seed, epoch, self.rank, number])
        with _one_thread():
            images = self.transform(self.dataset.fetch(indices), rng)
        labels = torch.from_numpy(self.dataset.labels[indices].astype(np.int64))
        return images, labels, torch.full((len(indices),), kind, dtype=torch.int64)

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
    brings them to the model's size on the device.
    """

    def __init__(
        self,
        dataset: TinyImageNet | ImageFolderDataset,
        aug: AugmentConfig,
        transform: TrainTransform,
        *,
        batch_size: int,
        seed: int,
        num_workers: int,
        rank: int,
        world_size: int,
        drop_last: bool,
    ) -> None:
        self.dataset = dataset
        self.aug = aug
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.num_classes: int = dataset.num_classes
        self.image_size: int = transform.out_size
        self.epoch = 0
        self._plan: tuple[int, list[tuple[np.ndarray, int]]] | None = None
        self._sampler = _PlanSampler()
        self._loader = DataLoader(
            _BatchMaker(dataset, transform, seed, rank),
            batch_size=None,
            sampler=self._sampler,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
            generator=torch.Generator(),  # the loader's own seed draw leaves the global RNG alone
        )

    def plan(self) -> list[tuple[np.ndarray, int]]:
        """The (indices, kind) of each batch of the current epoch (cached)."""
        if self._plan is None or self._plan[0] != self.epoch:
            batches = epoch_plan(
                len(self.dataset),
                batch_size=self.batch_size,
                seed=self.seed,
                epoch=self.epoch,
                kinds=self.aug.pass_kinds(),
                random_kind=self.aug.random_kind_per_batch(),
                rank=self.rank,
                world_size=self.world_size,
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
        return iter(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)


def _check_sharding(rank: int, world_size: int, batch_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is not in 0..{world_size - 1}")
    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")


def build_train_loader(
    root: str | Path,
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
    """The training loader for `root` (prepared folder, official archive or class-per-folder tree).

    `batch_size` is per rank; `img_size` is the model's input size (the loader itself yields
    images at native resolution unless ``aug.resize_first``; see TrainTransform).
    """
    _check_sharding(rank, world_size, batch_size)
    check_img_size(img_size)
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    dataset = open_split(root, "train")
    per_rank = len(dataset) // world_size if drop_last else math.ceil(len(dataset) / world_size)
    if drop_last and per_rank < batch_size:
        raise UserError(
            f"{len(dataset)} training images give {per_rank} per rank, fewer than the batch size "
            f"{batch_size}; use a smaller batch"
        )
    transform = TrainTransform(aug, img_size, dataset.native_size)
    return TrainLoader(
        dataset,
        aug,
        transform,
        batch_size=batch_size,
        seed=seed,
        num_workers=num_workers,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )


class _EvalBatches(torch.utils.data.Dataset):
    """Index array -> (uint8 images, labels); folder images are resized to `img_size` first."""

    def __init__(self, dataset: TinyImageNet | ImageFolderDataset, img_size: int | None) -> None:
        self.dataset = dataset
        self.img_size = img_size

    def __getitem__(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.dataset.fetch(indices)
        if not isinstance(images, torch.Tensor):
            from torchvision.transforms.v2 import functional as F

            size = [self.img_size, self.img_size]
            images = torch.stack([F.resize(img, size, antialias=True) for img in images])
        return images, torch.from_numpy(self.dataset.labels[indices].astype(np.int64))

    def __len__(self) -> int:
        return len(self.dataset)


def build_eval_loader(
    root: str | Path,
    split: str,
    *,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    img_size: int | None = None,
) -> DataLoader:
    """Evaluation batches (uint8 images, int64 labels; -1 for the test split), in order.

    Rank r gets samples r, r + world_size, ... (no padding, no drop), so every sample is seen
    exactly once across ranks. Tiny ImageNet images come at 64x64 (EvalTransform resizes them
    on the device); class-per-folder images are resized to `img_size` here, so it is required
    for those.
    """
    _check_sharding(rank, world_size, batch_size)
    dataset = open_split(root, split)
    if isinstance(dataset, ImageFolderDataset) and img_size is None:
        raise UserError("img_size is required to evaluate a class-per-folder data set")
    mine = np.arange(rank, len(dataset), world_size)
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    return DataLoader(
        _EvalBatches(dataset, img_size),
        batch_size=None,
        sampler=batches,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )
