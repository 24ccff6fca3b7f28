"""`maxvit data verify`: check any data source, naming every bad entry.

* Tiny ImageNet (a prepared folder): manifest, checksums, shapes and labels
  (:func:`maxvit.data.prepare.verify`).
* Class folders: every image of train/ and val/ is decoded.
* Shards: every sample of every split is read and decoded, its ``cls`` checked against
  classes.txt; with a local manifest, each shard's sample count and checksum too.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from maxvit.data.images import ImageError, decode_rgb
from maxvit.data.shards import decode_sample, sample_name, samples
from maxvit.data.sources import FOLDERS, SHARDS, DataSource
from maxvit.files import sha256_file

_BLOCK = 256  # entries decoded in parallel at a time


def problems(source: DataSource, workers: int | None = None) -> tuple[int, list[tuple[str, str]]]:
    """(entries checked, (name, problem) of each bad one) of a class-folder or shard source."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if source.kind == FOLDERS:
        return _folders(source, workers)
    if source.kind == SHARDS:
        return _shards(source, workers)
    raise ValueError(f"{source.kind} sources are verified by maxvit.data.prepare.verify")


def _checked(
    entries: Iterable[Any], check: Callable[[Any], str | None], workers: int
) -> Iterable[tuple[Any, str | None]]:
    """(entry, problem or None) for each entry, decoded `workers` at a time, in order."""
    entries = iter(entries)
    with ThreadPoolExecutor(workers) as pool:
        while block := list(itertools.islice(entries, _BLOCK)):
            yield from zip(block, pool.map(check, block), strict=True)


def _decode_file(path: Path) -> str | None:
    try:
        decode_rgb(path)
    except ImageError as exc:
        return str(exc)
    return None


def _folders(source: DataSource, workers: int) -> tuple[int, list[tuple[str, str]]]:
    found, checked = [], 0
    for split in ("train", "val"):
        if source.has_split(split):
            for path, problem in _checked(source.dataset(split).files, _decode_file, workers):
                checked += 1
                if problem is not None:
                    found.append((str(path), problem))
    return checked, found


def _shards(source: DataSource, workers: int) -> tuple[int, list[tuple[str, str]]]:
    def check(sample: dict) -> str | None:
        try:
            image, _ = decode_sample(sample, source.num_classes)
            decode_rgb(image, sample_name(sample))
        except (ValueError, ImageError) as exc:
            return str(exc)
        return None

    found, checked = [], 0
    records = _manifest_records(source)
    for shards in source.shards.values():
        for i, url in enumerate(shards.urls):
            errors: list[tuple[str, str]] = []
            count = 0
            for sample, problem in _checked(samples(url, errors), check, workers):
                count += 1
                if problem is not None:
                    found.append((sample_name(sample), problem))
            checked += count
            found += errors
            if shards.counts is not None and count != shards.counts[i] and not errors:
                found.append((url, f"holds {count} samples; manifest.json says {shards.counts[i]}"))
            record = records.get(Path(url).name)
            if record is not None and sha256_file(url) != record["sha256"]:
                found.append((url, "its sha256 differs from manifest.json"))
    return checked, found


def _manifest_records(source: DataSource) -> dict[str, dict]:
    """Shard name -> manifest record, for a local shard folder with a manifest."""
    import json

    path = Path(source.location) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        splits = json.loads(path.read_text())["splits"]
        return {s["name"]: s for split in splits.values() for s in split["shards"]}
    except (ValueError, KeyError, TypeError):
        return {}
