"""Deterministic, resumable loaders of map-style data sets (Tiny ImageNet, class folders).

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

The dataset turns indices into images (``train_images`` / ``eval_images``, see
:mod:`maxvit.data.datasets`); an image that cannot be decoded is left out of its batch (so that
batch is smaller) and counted by `maxvit.data.bad.BadSamples` (the loader's :attr:`bad`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from maxvit.data.augment_config import AugmentConfig
from maxvit.data.bad import BadSamples
from maxvit.data.crop import TrainTransform, eval_box
from maxvit.data.datasets import ImageFolderDataset, TinyImageNet
from maxvit.data.sharding import Sharding

# One plan entry: (epoch, batch number in the epoch, sample indices, pass kind).
BatchSpec = tuple[int, int, np.ndarray, int]
MapDataset = TinyImageNet | ImageFolderDataset


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
    workers."""

    def __init__(
        self, dataset: MapDataset, transform: TrainTransform, seed: int, rank: int
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.rank = rank

    def __getitem__(self, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        epoch, number, indices, kind = spec
        rng = np.random.default_rng([self.seed, epoch, self.rank, number])
        images, kept, failed = self.dataset.train_images(indices, self.transform, rng)
        labels = torch.from_numpy(self.dataset.labels[indices[kept]].astype(np.int64))
        kinds = torch.full((len(kept),), kind, dtype=torch.int64)
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
    loader's resolution (:attr:`image_size`); :class:`~maxvit.data.batch_augment.BatchAugment`
    brings them to the model's size on the device. A batch holding an undecodable image is
    one sample short; :attr:`bad` counts such samples (`BadSamples`).
    """

    def __init__(
        self,
        dataset: MapDataset,
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
        self.bad = BadSamples("train", rank=s.rank, world=s.world_size)
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
        self.bad.new_epoch(-(-len(self.dataset) // self.sharding.world_size))  # this rank's share
        return self.bad.count(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def bad_report(self) -> str | None:
        """A line counting the undecodable samples skipped this epoch, or None."""
        return self.bad.report()


class _EvalBatches(torch.utils.data.Dataset):
    """Index array -> (uint8 images, labels, failures), by the dataset's `eval_images`."""

    def __init__(self, dataset: MapDataset, img_size: int, crop: float) -> None:
        self.dataset = dataset
        self.img_size = img_size
        self.box = eval_box(crop, img_size)

    def __getitem__(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list]:
        images, kept, failed = self.dataset.eval_images(indices, self.img_size, self.box)
        return images, torch.from_numpy(self.dataset.labels[indices[kept]].astype(np.int64)), failed

    def __len__(self) -> int:
        return len(self.dataset)


def eval_batches(
    dataset: MapDataset, img_size: int, crop: float, sharding: Sharding, every: int = 1
) -> tuple[DataLoader, int]:
    """Evaluation chunks (uint8 images, labels, failures) of one rank, and its sample count.

    Of the samples 0, every, 2 * every, ... (all of them by default), rank r gets the r-th,
    (r + world_size)-th, ..., in batches of ``sharding.batch_size``.
    """
    mine = np.arange(0, len(dataset), every)[sharding.rank :: sharding.world_size]
    batches = [mine[i : i + sharding.batch_size] for i in range(0, len(mine), sharding.batch_size)]
    loader = DataLoader(
        _EvalBatches(dataset, img_size, crop),
        batch_size=None,
        sampler=batches,
        num_workers=sharding.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )
    return loader, len(mine)
