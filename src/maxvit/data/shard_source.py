"""WebDataset shards as a data source: a local folder, or a brace pattern, URL or ``pipe:``
command naming the shards of both splits (conventions in :mod:`maxvit.data.shards`; sample
counts in :mod:`maxvit.data.shard_index`; streaming over ranks and workers in
:mod:`maxvit.data.stream`). Opening one imports no torch."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from maxvit.data.images import ImageError
from maxvit.data.items import Item, checked, ext_of, failed_item
from maxvit.data.shard_index import (
    check_manifest,
    check_sizes,
    count_shards,
    read_manifest,
    read_timm_info,
)
from maxvit.data.shards import (
    SPLIT_WORDS,
    ShardSplit,
    beside,
    decode_sample,
    read_text,
    sample_name,
    shard_name,
    split_of,
)
from maxvit.data.source import LABELLED_SPLITS, LAYOUTS, DataSource
from maxvit.errors import UserError
from maxvit.files import sha256_file

if TYPE_CHECKING:
    from maxvit.data.augment_config import AugmentConfig
    from maxvit.data.crop import TrainTransform
    from maxvit.data.sharding import Sharding
    from maxvit.data.source import EvalChunks, Verified
    from maxvit.data.stream import ShardTrainLoader


@dataclass(frozen=True)
class ShardSource(DataSource):
    """Streamed shards; `shards` holds the shards of each split with their sample counts
    (`counted_by` says from where: a manifest, timm's _info.json, the counting pass); `recorded`
    the manifest's record of each shard (count, bytes, sha256), empty without a manifest."""

    kind: ClassVar[str] = "shards"
    shuffle_to_shard: ClassVar[bool] = False  # a stream cannot be permuted without reading it all

    shards: dict[str, ShardSplit]
    counted_by: str = "manifest.json"
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, spec: str | Path) -> ShardSource:
        """The shards in folder `spec` (a Path), or named by the pattern `spec` (a str)."""
        folder, location, urls = _shard_urls(spec)
        by_split = _by_split(urls, location, folder)
        first = urls[0]
        classes_at = beside(first, "classes.txt")
        text = read_text(classes_at)
        manifest = read_manifest(beside(first, "manifest.json"))
        if manifest is not None:
            check_manifest(manifest, urls, folder, (classes_at, text))
            known, counted_by = manifest.counts(), "manifest.json"
        else:
            known, counted_by = read_timm_info(beside(first, "_info.json")), "_info.json"
        # training needs every count; counted here, behind torchrun's first-opener barrier
        todo = urls if text is None else [u for u in urls if shard_name(u) not in known]
        if todo:
            counted = count_shards(todo, location)
            known = {**known, **{shard_name(u): n for u, (n, _) in zip(todo, counted, strict=True)}}
            counted_by = "the counting pass"
        if text is None:  # the classes are the labels found, 0..highest
            top = max(t for _, t in counted)
            if top < 0:
                raise UserError(f"{location}: no sample has a label (a cls, or a json label)")
            classes = names = tuple(str(i) for i in range(top + 1))
        else:
            classes = _class_list(text, classes_at)
            names = manifest.class_names if manifest is not None else None
            if names is None or len(names) != len(classes):
                names = classes
        shards = {
            split: ShardSplit(tuple(us), tuple(known[shard_name(u)] for u in us))
            for split, us in by_split.items()
        }
        recorded = manifest.shards if manifest is not None else {}
        return cls(location, classes, names, shards, counted_by, recorded)

    def has_split(self, split: str) -> bool:
        return split in self.shards

    def shard_split(self, split: str) -> ShardSplit:
        """The shards of `split`."""
        if split not in self.shards:
            raise UserError(f"{self.location} has no {split} shards")
        return self.shards[split]

    def count(self, split: str) -> int | None:
        return self.shards[split].size if split in self.shards else 0

    def items(self, split: str) -> Iterator[Item]:
        shards = self.shard_split(split)
        for url in shards.urls:
            errors: list[tuple[str, str]] = []
            yield from self._items_of(shards, url, errors)
            yield from (failed_item(name, error) for name, error in errors)

    def _items_of(
        self, shards: ShardSplit, url: str, errors: list[tuple[str, str]]
    ) -> Iterator[Item]:
        """The samples of one shard; a shard that cannot be read adds to `errors`."""
        for sample in shards.read(url, errors):
            try:
                key, image, label = decode_sample(sample, self.num_classes)
            except ImageError as exc:
                yield failed_item(sample_name(sample), str(exc))
                continue
            yield Item(sample_name(sample), ext_of(key), label, data=image)

    def train_loader(
        self, aug: AugmentConfig, transform: TrainTransform, sharding: Sharding, *, drop_last: bool
    ) -> ShardTrainLoader:
        """Shards stream whole batches (`drop_last` does not apply). Local shards must have the
        sizes their manifest records."""
        from maxvit.data.stream import ShardTrainLoader

        split = self.shard_split("train")
        check_sizes(self.recorded, split.urls)
        if split.sample_bytes is None and all(os.path.isfile(u) for u in split.urls):
            stored = sum(os.path.getsize(u) for u in split.urls)
            split = dataclasses.replace(split, sample_bytes=stored // max(split.size, 1))
        return ShardTrainLoader(split, self.num_classes, aug, transform, sharding)

    def eval_batches(
        self, split: str, img_size: int, crop: float, sharding: Sharding, every: int = 1
    ) -> tuple[EvalChunks, int | None]:
        from maxvit.data.stream import shard_eval_batches

        if every != 1:
            raise UserError(
                "a fixed subset of a split (fit_images) needs data read by index: Tiny ImageNet "
                "or class folders, not shards"
            )
        shards = self.shard_split(split)
        check_sizes(self.recorded, shards.urls)
        expected = None if shards.size is None else shards.size // sharding.world_size
        return shard_eval_batches(shards, self.num_classes, img_size, crop, sharding), expected

    def verify(self, workers: int) -> Verified:
        """Decode every sample and check its label; check each shard's sample count against
        what gave the counts, and a local shard's sha256 against its manifest."""
        bad, count = [], 0
        if not self.has_split("val"):
            bad.append((self.location, "no val split (a validation set is needed to train)"))
        for split in LABELLED_SPLITS:
            if not self.has_split(split):
                continue
            shards = self.shards[split]
            for i, url in enumerate(shards.urls):
                errors: list[tuple[str, str]] = []
                read = 0
                for item, problem in checked(self._items_of(shards, url, errors), workers):
                    read += 1
                    if problem is not None:
                        bad.append((item.name, problem))
                count += read
                bad += errors
                if shards.counts is not None and read != shards.counts[i] and not errors:
                    said = f"{self.counted_by} says {shards.counts[i]}"
                    bad.append((url, f"holds {read} samples; {said}"))
                record = self.recorded.get(shard_name(url))
                if record is not None and Path(url).is_file():
                    if sha256_file(url) != record["sha256"]:
                        bad.append((url, "its sha256 differs from manifest.json"))
        return self._decoded(count, bad)


def _shard_urls(spec: str | Path) -> tuple[Path | None, str, list[str]]:
    """(the local folder or None, the location for messages, the shards, in order)."""
    import braceexpand

    if isinstance(spec, Path):
        folder = spec.absolute()
        urls = sorted(str(p) for p in folder.glob("*.tar") if split_of(p.name))
        if not urls:
            raise UserError(f"{folder} holds no train or val .tar shards; {LAYOUTS}")
        return folder, str(folder), urls
    urls = [u for part in spec.split("::") for u in braceexpand.braceexpand(part)]
    local = [u for u in urls if not u.startswith("pipe:") and "://" not in u]
    missing = next((u for u in local if not Path(u).is_file()), None)
    if missing is not None:  # one line now, not a counting pass that fails on it
        raise UserError(f"{missing} (a shard of {spec}) is not a file")
    return None, spec, urls


def _by_split(urls: list[str], location: str, folder: Path | None) -> dict[str, list[str]]:
    by_split: dict[str, list[str]] = {}
    for url in urls:
        split = split_of(shard_name(url))
        if split is None:
            words = " or ".join(w for ws in SPLIT_WORDS.values() for w in ws)
            raise UserError(
                f"cannot tell the split of shard {shard_name(url)}: a shard's file name holds "
                f"its split as a word ({words}: train-000000.tar, in1k-val-000001.tar)"
            )
        by_split.setdefault(split, []).append(url)
    if folder is not None and "val" not in by_split:
        raise UserError(
            f"{folder} has train shards but no val shards (val-*.tar, *-validation-*.tar); "
            "training and evaluation need both"
        )
    return by_split


def _class_list(text: str, where: str) -> tuple[str, ...]:
    classes = [c.strip() for c in text.splitlines()]
    classes = [c for c in classes if c]
    if not classes or len(set(classes)) != len(classes):
        raise UserError(f"{where} must list distinct class names")
    return tuple(classes)
