"""Streaming WebDataset shards for training and evaluation, split over ranks, then workers.

Training (`ShardTrainLoader`), per epoch, as a pure function of (seed, epoch):

1. The shards are permuted and dealt to the ranks: rank r reads shards ``r::world_size``.
2. A rank's shards are dealt to its W loader workers ("roles" ``q::W``). Each role streams its
   shards through webdataset's tar reader and a seeded shuffle buffer (`shuffle_size`: about
   `SHUFFLE_BYTES` of encoded images, at least `SHUFFLE_MIN` samples), cuts the stream into chunks of one batch, and decodes each chunk straight into its
   crops (`maxvit.data.crop.TrainTransform.encoded`), with a generator seeded by
   (seed, epoch, rank, role, chunk).
3. The main process takes the chunks in the DataLoader's round-robin order (chunk i from role
   i mod W) and cuts them into batches of exactly `batch_size`.

Every rank stops after the same number of batches: the smallest rank's sample count divided by
the batch (the shards' sample counts, :mod:`maxvit.data.shard_index`). So every sample is read at most once per epoch;
what a rank holds beyond that (at most one shard's worth when the shards do not divide evenly
among the ranks, plus less than a batch) waits for a later epoch, where the permutation differs.

Resume: ``iter_from(k)`` restarts the stream at batch k of the epoch without decoding what
came before: each role skips its first chunks undecoded, the worker-to-role assignment is
rotated so that the round-robin continues where it stopped, and the first chunk is cut at the
right sample. That is exact (bit for bit on the CPU) when the world size and worker count are
those of the interrupted run, no undecodable sample came before the checkpoint in that epoch,
and the shards hold the counts they were opened with. Otherwise the rest of that epoch follows
the new setting's order from the same sample count: some of its samples may be trained on
twice and others not at all; later epochs are complete again (docs/data.md).

Evaluation (`shard_eval_batches`): rank r reads shards ``r::world_size`` in order, split over
its workers; every sample is read exactly once across ranks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from maxvit.data.augment_config import AugmentConfig
from maxvit.data.bad import BadSamples
from maxvit.data.crop import Box, TrainTransform, decode_batch, decode_crop, eval_box
from maxvit.data.sharding import Sharding
from maxvit.data.shards import ShardSplit, decode_sample, sample_name
from maxvit.errors import UserError

SHUFFLE_BYTES = 256 * 2**20  # a worker's shuffle buffer holds about this much encoded data
SHUFFLE_MIN = 2000  # samples, whatever their size (and where it is unknown)
_EMPTY_LABELS = torch.empty(0, dtype=torch.int64)


def shuffle_size(split: ShardSplit) -> int:
    """Samples in a worker's shuffle buffer: about `SHUFFLE_BYTES` of them (2,300 ImageNet
    JPEGs; all of Tiny ImageNet, whose row groups or shards may each hold few classes)."""
    if split.sample_bytes is None:
        return SHUFFLE_MIN
    return max(SHUFFLE_MIN, SHUFFLE_BYTES // max(split.sample_bytes, 1))


def _deal(n: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """The shard indices rank `rank` reads in `epoch`: a seeded permutation, dealt r::world."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)[rank::world_size]


class _TrainStream(IterableDataset):
    """The chunks one worker delivers in one epoch (see the module docstring).

    Set before each ``iter()``: `epoch`, `rotation` (role of worker d = (d + rotation) % W),
    `start` (chunk index in the round-robin sequence where the stream resumes) and `items`
    (chunks each worker yields, padded with empty chunks so every worker yields the same
    number and the round-robin stays regular).
    """

    def __init__(
        self,
        split: ShardSplit,
        num_classes: int,
        transform: TrainTransform,
        sharding: Sharding,
    ) -> None:
        self.split = split
        self.num_classes = num_classes
        self.transform = transform
        self.sharding = sharding
        self.epoch = 0
        self.rotation = 0
        self.start = 0
        self.items = 0

    def role_shards(self, role: int, roles: int) -> list[int]:
        s = self.sharding
        mine = _deal(len(self.split.urls), s.seed, self.epoch, s.rank, s.world_size)
        return mine[role::roles].tolist()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        info = get_worker_info()
        worker, roles = (info.id, info.num_workers) if info else (0, 1)
        role = (worker + self.rotation) % roles
        skip = (self.start + worker) // roles  # this role's chunks already trained on
        errors: list[tuple[str, str]] = []
        stream = itertools.chain.from_iterable(
            self.split.read(self.split.urls[i], errors) for i in self.role_shards(role, roles)
        )
        import webdataset

        s = self.sharding
        state = np.random.SeedSequence([s.seed, self.epoch, s.rank, role]).generate_state(1)
        size = shuffle_size(self.split)
        shuffle = webdataset.shuffle(size, size, seed=int(state[0]))
        yielded = 0
        for index, chunk in enumerate(_chunks(shuffle(stream), s.batch_size)):
            if index < skip:
                continue
            rng = np.random.default_rng([s.seed, self.epoch, s.rank, role, index])
            yield _train_chunk(chunk, self.num_classes, self.transform, rng, errors)
            yielded += 1
        while yielded < self.items - self.start // roles:  # the same count from every worker
            yield torch.empty((0, 3, 1, 1), dtype=torch.uint8), _EMPTY_LABELS, list(errors)
            errors.clear()
            yielded += 1


def _chunks(stream: Iterator[dict], size: int) -> Iterator[list[dict]]:
    while chunk := list(itertools.islice(stream, size)):
        yield chunk


def _train_chunk(
    chunk: list[dict[str, Any]],
    num_classes: int,
    transform: TrainTransform,
    rng: np.random.Generator,
    errors: list[tuple[str, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Decode a chunk of raw samples into (uint8 images, labels, failures incl. shard errors)."""
    names = [sample_name(sample) for sample in chunk]
    images, kept, failed = transform.encoded(
        lambda i: decode_sample(chunk[i], num_classes)[1], names, rng
    )
    labels = [decode_sample(chunk[i], num_classes)[2] for i in kept]
    failed = [*errors, *failed]
    errors.clear()
    return images, torch.tensor(labels, dtype=torch.int64), failed


def _eval_chunk(
    chunk: list[dict[str, Any]],
    num_classes: int,
    size: int,
    box: Box,
    errors: list[tuple[str, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Decode a chunk of raw samples into the evaluation region at `size`: (images, labels,
    failures incl. shard errors)."""
    names = [sample_name(sample) for sample in chunk]

    def decode(i: int) -> torch.Tensor:
        return decode_crop(decode_sample(chunk[i], num_classes)[1], names[i], size, box)

    images, kept, failed = decode_batch(names, decode, size)
    labels = [decode_sample(chunk[i], num_classes)[2] for i in kept]
    failed = [*errors, *failed]
    errors.clear()
    return images, torch.tensor(labels, dtype=torch.int64), failed


class ShardTrainLoader:
    """Training batches of one rank from shards; the interface of `plan_loader.TrainLoader`.

    Yields ``(images uint8 (B,3,S,S), labels int64 (B,), kind int64 (B,))``; ``len(loader)``,
    ``set_epoch(e)`` and ``iter_from(k)`` as there. The seed pipeline's pass kinds are drawn
    per batch (one pass per epoch over the shards). `split` must have its counts
    (`ShardSource.train_loader` counts the shards where nothing gave them).
    """

    def __init__(
        self,
        split: ShardSplit,
        num_classes: int,
        aug: AugmentConfig,
        transform: TrainTransform,
        sharding: Sharding,
    ) -> None:
        if len(split.urls) < sharding.world_size:
            raise UserError(
                f"{len(split.urls)} train shards cannot feed {sharding.world_size} ranks; write "
                "smaller shards (`maxvit data shard --shard-size N`)"
            )
        self.split = split
        self.aug = aug
        self.sharding = sharding
        self.num_classes = num_classes
        self.image_size: int = transform.out_size
        self.epoch = 0
        self._stream = _TrainStream(split, num_classes, transform, sharding)
        self.bad = BadSamples("train", None, sharding.rank, sharding.world_size)
        if len(self) < 1:
            raise UserError(
                "the smallest rank's share of the train shards is below one batch of "
                f"{sharding.batch_size}"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_count(self, rank: int) -> int:
        counts = self.split.counts
        return sum(
            counts[i]
            for i in _deal(
                len(counts), self.sharding.seed, self.epoch, rank, self.sharding.world_size
            )
        )

    def __len__(self) -> int:
        """Batches per epoch: the same on every rank (the smallest rank's full batches)."""
        return (
            min(self._rank_count(r) for r in range(self.sharding.world_size))
            // self.sharding.batch_size
        )

    def _chunk_sizes(self) -> list[int]:
        """Samples in chunk i of the round-robin sequence (chunk i // W of role i % W)."""
        roles = max(self.sharding.num_workers, 1)
        self._stream.epoch = self.epoch
        per_role = []
        for role in range(roles):
            total = sum(self.split.counts[i] for i in self._stream.role_shards(role, roles))
            sizes = [self.sharding.batch_size] * (total // self.sharding.batch_size)
            per_role.append(
                sizes
                + ([total % self.sharding.batch_size] if total % self.sharding.batch_size else [])
            )
        items = max(len(s) for s in per_role)
        return [
            per_role[i % roles][i // roles] if i // roles < len(per_role[i % roles]) else 0
            for i in range(items * roles)
        ]

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches start_batch, start_batch+1, ... of the current epoch."""
        total = len(self)
        if not 0 <= start_batch <= total:
            raise ValueError(f"start batch {start_batch} outside 0..{total}")
        sizes = self._chunk_sizes()
        roles = max(self.sharding.num_workers, 1)
        done = start_batch * self.sharding.batch_size  # samples of the epoch already trained on
        start, offset = 0, done
        while start < len(sizes) and offset >= sizes[start]:
            offset -= sizes[start]
            start += 1
        stream = self._stream
        stream.epoch, stream.rotation, stream.start = self.epoch, start % roles, start
        stream.items = len(sizes) // roles
        self.bad.new_epoch(self._rank_count(self.sharding.rank))
        return self._batches(start_batch, total, offset)

    def _batches(self, first: int, total: int, offset: int) -> Iterator[tuple[torch.Tensor, ...]]:
        loader = DataLoader(
            self._stream,
            batch_size=None,
            num_workers=self.sharding.num_workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if self.sharding.num_workers > 0 else None,
        )
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        have = 0
        number = first
        last: tuple[torch.Tensor, torch.Tensor] | None = None
        chunks = self.bad.count(loader)
        while number < total:
            chunk = next(chunks, None)
            if chunk is None:  # samples lost to errors: repeat from the last batch to keep step
                if last is None:
                    raise UserError("the train shards of this rank yielded no sample")
                pending.append(last)
                have += len(last[1])
            else:
                images, labels = chunk
                if offset:
                    images, labels, offset = images[offset:], labels[offset:], 0
                if len(labels):
                    pending.append((images, labels))
                    have += len(labels)
            while have >= self.sharding.batch_size and number < total:
                images, labels, pending, have = _take(pending, self.sharding.batch_size)
                last = (images, labels)
                kind = self._kind(number)
                yield images, labels, torch.full((len(labels),), kind, dtype=torch.int64)
                number += 1

    def _kind(self, number: int) -> int:
        if self.aug.pipeline != "seed":
            return 0
        rng = np.random.default_rng([self.sharding.seed, self.epoch, self.sharding.rank, number, 4])
        return int(rng.integers(4))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.iter_from(0)

    def bad_report(self) -> str | None:
        """A line counting the undecodable samples skipped this epoch, or None."""
        return self.bad.report()


def _take(
    pending: list[tuple[torch.Tensor, torch.Tensor]], n: int
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], int]:
    """The first n samples of the pending chunks as one batch; returns the rest too."""
    images, labels, taken = [], [], 0
    rest = list(pending)
    while taken < n:
        x, y = rest.pop(0)
        need = n - taken
        if len(y) > need:
            rest.insert(0, (x[need:], y[need:]))
            x, y = x[:need], y[:need]
        images.append(x)
        labels.append(y)
        taken += len(y)
    left = sum(len(y) for _, y in rest)
    return torch.cat(images), torch.cat(labels), rest, left


class _EvalStream(IterableDataset):
    """Chunks of decoded evaluation images of one rank's shards (split over the workers)."""

    def __init__(
        self,
        split: ShardSplit,
        num_classes: int,
        img_size: int,
        crop: float,
        sharding: Sharding,
    ) -> None:
        self.split = split
        self.num_classes = num_classes
        self.img_size = img_size
        self.crop = crop
        self.sharding = sharding

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        s = self.sharding
        urls = self.split.urls[s.rank :: s.world_size][worker::workers]
        errors: list[tuple[str, str]] = []
        stream = itertools.chain.from_iterable(self.split.read(u, errors) for u in urls)
        box = eval_box(self.crop, self.img_size)
        for chunk in _chunks(stream, s.batch_size):
            yield _eval_chunk(chunk, self.num_classes, self.img_size, box, errors)
        if errors:
            empty = torch.empty((0, 3, self.img_size, self.img_size), dtype=torch.uint8)
            yield empty, _EMPTY_LABELS, errors


def shard_eval_batches(
    split: ShardSplit, num_classes: int, img_size: int, crop: float, sharding: Sharding
) -> DataLoader:
    """Evaluation chunks ``(uint8 images at img_size, labels, failures)`` of one rank."""
    mine = len(split.urls[sharding.rank :: sharding.world_size])
    return DataLoader(
        _EvalStream(split, num_classes, img_size, crop, sharding),
        batch_size=None,
        num_workers=min(sharding.num_workers, mine),
        pin_memory=torch.cuda.is_available(),
    )
