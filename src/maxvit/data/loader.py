"""The training and evaluation loaders of any data source: `build_train_loader`,
`build_eval_loader`.

Each takes a `DataSource` (or anything `maxvit.data.open_data` accepts) and asks it for its
loader: Tiny ImageNet and class folders load through the batch plans of
:mod:`maxvit.data.plan_loader`; WebDataset shards stream through :mod:`maxvit.data.stream`,
with the same interface. Undecodable images are left out, named and counted
(`maxvit.data.bad.BadSamples`); the run stops when a split has more than its `bad_samples`
policy accepts (a count, or a percentage: 1% by default, at least one file), the images Tiny
ImageNet's prepare left out included.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from maxvit.data.augment_config import AugmentConfig, check_eval_crop, check_img_size
from maxvit.data.bad import DEFAULT_BAD_SAMPLES, BadSamples, parse_bad_samples
from maxvit.data.crop import TrainTransform
from maxvit.data.prepare import skipped_images
from maxvit.data.sharding import Sharding
from maxvit.data.source import DataSource
from maxvit.data.sources import open_data
from maxvit.data.tiny_source import TinySource
from maxvit.errors import UserError

if TYPE_CHECKING:
    import torch

    from maxvit.data.plan_loader import TrainLoader
    from maxvit.data.source import EvalChunks
    from maxvit.data.stream import ShardTrainLoader


def _source(data: DataSource | str | Path) -> DataSource:
    return data if isinstance(data, DataSource) else open_data(data)


def _known_bad(source: DataSource, split: str) -> list[tuple[str, str]]:
    """The images of `split` known to be undecodable before loading: those Tiny ImageNet's
    prepare left out."""
    return skipped_images(source.location, split) if isinstance(source, TinySource) else []


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
    bad_samples: int | str = DEFAULT_BAD_SAMPLES,
) -> TrainLoader | ShardTrainLoader:
    """The training loader of a data source (any layout; a path is opened with `open_data`).

    `batch_size` is per rank; `img_size` is the model's input size (Tiny ImageNet batches come
    at native resolution unless ``aug.resize_first``; see `maxvit.data.crop.TrainTransform`).
    `bad_samples`: the undecodable samples an epoch accepts, a count (5) or a percentage of the
    split ("1%"; `maxvit.data.bad`). The loader has ``len``, ``set_epoch(e)``,
    ``iter_from(k)`` and ``bad_report()``.
    """
    sharding = Sharding(batch_size, seed, rank, world_size, num_workers)
    check_img_size(img_size)
    policy = parse_bad_samples(bad_samples)
    source = _source(data)
    transform = TrainTransform(aug, img_size, source.native_size)
    loader = source.train_loader(aug, transform, sharding, drop_last=drop_last)
    loader.bad.allow(policy, _known_bad(source, "train"))
    return loader


class EvalLoader:
    """Evaluation batches ``(uint8 images, int64 labels)`` of one rank, in order.

    Tiny ImageNet batches come at 64x64 and get their geometry on the device
    (``EvalTransform(img_size, crop)``); images of any size come at img_size, already resized
    and centre-cropped (``EvalTransform(img_size, crop=None)``): :attr:`device_crop` says which.
    Undecodable images are left out, named and counted (`BadSamples`).
    """

    def __init__(
        self, chunks: EvalChunks, expected: int | None, bad: BadSamples, device_crop: float | None
    ) -> None:
        self._chunks = chunks
        self._expected = expected
        self._bad = bad
        self.device_crop = device_crop

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._bad.new_epoch(self._expected)
        yield from self._bad.count(self._chunks)
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
    bad_samples: int | str = DEFAULT_BAD_SAMPLES,
    every: int = 1,
) -> EvalLoader:
    """Evaluation batches of `split` (uint8 images, int64 labels; -1 for Tiny ImageNet's test).

    Rank r gets samples r, r + world_size, ... (shards: shards r, r + world_size, ...), with no
    padding and no drop, so every sample is seen exactly once across ranks. The geometry is
    the recorded one with `crop` 1.0 (resize to img_size), else resize to img_size / crop and a
    centre crop of img_size. `bad_samples` as for `build_train_loader`. `every` > 1 evaluates
    only every `every`-th sample (a fixed subset spread over the classes; data read by index).
    """
    sharding = Sharding(batch_size, 0, rank, world_size, num_workers)
    check_img_size(img_size)
    check_eval_crop(crop)
    policy = parse_bad_samples(bad_samples)
    source = _source(data)
    if every < 1:
        raise UserError(f"every must be >= 1, got {every}")
    chunks, expected = source.eval_batches(split, img_size, crop, sharding, every)
    device_crop = crop if source.native_size is not None else None
    bad = BadSamples(split, rank=rank, world=world_size)
    bad.allow(policy, _known_bad(source, split))
    return EvalLoader(chunks, expected, bad, device_crop)
