"""`maxvit data shard`: write WebDataset shards from any data source.

Output (``DIR``), in webdataset's and timm's conventions (see :mod:`maxvit.data.shards`):
``train-000000.tar ...``, ``val-000000.tar ...``, ``classes.txt`` (class ids in label order),
``class_names.txt`` and ``manifest.json`` (per shard: sample count, bytes, sha256; the
samples left out). A sample is ``<key>.<ext>`` (the image file's own bytes, never re-encoded,
except Tiny ImageNet given as a prepared folder, whose arrays become PNG) plus ``<key>.cls``.
Keys are ``<8-digit index>-<source file stem>``.

Every image is decoded once to check it; an undecodable one is left out, named on stderr and
listed in the manifest. Train samples are shuffled (seeded) before they are cut into shards,
so that a shard holds many classes and a streaming shuffle buffer mixes well; val keeps its
order. (A shard source is re-written in its own order: it cannot be permuted without reading
it all first.) The folder appears atomically when complete (`maxvit.files.staging_dir`).
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maxvit.data.images import ImageError, decode_rgb
from maxvit.data.shards import MANIFEST_FORMAT, decode_sample, sample_name, samples
from maxvit.data.sources import FOLDERS, SHARDS, DataSource, open_data
from maxvit.errors import UserError
from maxvit.files import sha256_file, staging_dir, write_json

SPLITS = ("train", "val")  # Tiny ImageNet's unlabelled test split has no place in shards
_BLOCK = 256  # samples verified in parallel at a time


@dataclass
class Item:
    """One sample to write: where it came from, its label and its bytes (read lazily)."""

    name: str  # source file or shard:key, for messages
    ext: str  # jpg, png or webp
    label: int
    read: Callable[[], bytes] | None = None  # gives the bytes, when `data` is not given
    data: bytes | None = None
    error: str | None = None  # a problem found while reading the source


def _ext(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return "jpg" if suffix in ("jpg", "jpeg") else suffix


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "_", base.rsplit(".", 1)[0])[:60]


def _items(source: DataSource, spec: str, split: str) -> Iterator[Item]:
    """The samples of `split` in source order."""
    if source.kind == FOLDERS:
        dataset = source.dataset(split)
        for path, label in zip(dataset.files, dataset.labels.tolist(), strict=True):
            yield Item(str(path), _ext(path.name), int(label), read=path.read_bytes)
    elif source.kind == SHARDS:
        errors: list[tuple[str, str]] = []
        for url in source.shard_split(split).urls:
            for sample in samples(url, errors):
                try:
                    image, label = decode_sample(sample, source.num_classes)
                except ValueError as exc:
                    errors.append((sample_name(sample), str(exc)))
                    continue
                ext = next(k for k in ("jpg", "jpeg", "png", "webp") if k in sample)
                yield Item(sample_name(sample), _ext(ext), label, data=image)
            for name, error in errors:
                yield Item(name, "", -1, error=error)
            errors.clear()
    else:
        yield from _tiny_items(source, spec, split)


def _tiny_items(source: DataSource, spec: str, split: str) -> Iterator[Item]:
    """Tiny ImageNet: the original JPEGs from the archive when `spec` is one, else PNGs of the
    prepared arrays."""
    from maxvit.data.prepare import open_archive, read_layout

    path = Path(spec).expanduser()
    if path.is_file() or (path.is_dir() and (path / "wnids.txt").exists()):
        archive = open_archive(path)
        layout = read_layout(archive, None)
        for name, label in zip(layout.files[split], layout.labels[split], strict=True):
            yield Item(name, _ext(name), label, read=functools.partial(archive.read, name))
        return
    from maxvit.data.datasets import TinyImageNet

    dataset = TinyImageNet(source.location, split)
    names = (Path(source.location) / f"{split}_files.txt").read_text().splitlines()
    for i, name in enumerate(names):
        png = functools.partial(_png, dataset.images, i)
        yield Item(name, "png", int(dataset.labels[i]), read=png)


def _png(images: np.ndarray, row: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(images[row])).save(buffer, format="PNG")
    return buffer.getvalue()


def _check(item: Item) -> str | None:
    """Read the item's bytes if needed and decode them; the error message, or None if fine."""
    if item.error is not None:
        return item.error
    try:
        if item.data is None:
            item.data = item.read()
        if item.ext not in ("jpg", "png", "webp"):
            return f"unsupported image type .{item.ext} (use JPEG, PNG or WebP)"
        decode_rgb(item.data, item.name)
    except (OSError, ImageError) as exc:
        return str(exc)
    return None


class _ShardFile:
    """One shard being written: a tar through webdataset's TarWriter, hashed as it goes."""

    def __init__(self, folder: Path, split: str, number: int) -> None:
        import webdataset

        self.name = f"{split}-{number:06d}.tar"
        self.path = folder / self.name
        self.count = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = webdataset.TarWriter(self._file, encoder=False, mtime=0.0)

    def write(self, key: str, item: Item) -> None:
        self._writer.write({"__key__": key, item.ext: item.data, "cls": str(item.label).encode()})
        self.count += 1

    def close(self) -> dict:
        self._writer.close()
        self._file.close()
        return {
            "name": self.name,
            "count": self.count,
            "bytes": self.path.stat().st_size,
            "sha256": sha256_file(self.path),
        }


def _write_split(
    items: Iterator[Item], folder: Path, split: str, shard_size: int, workers: int, bar
) -> dict:
    """Write one split's shards; returns its manifest record."""
    shards: list[dict] = []
    skipped: list[dict] = []
    current: _ShardFile | None = None
    index = 0
    with ThreadPoolExecutor(workers) as pool:
        while block := list(itertools.islice(items, _BLOCK)):
            for item, error in zip(block, pool.map(_check, block), strict=True):
                bar.update(1)
                if error is not None:
                    skipped.append({"name": item.name, "error": error})
                    print(f"left out {item.name}: {error}", file=sys.stderr, flush=True)
                    continue
                if current is None:
                    current = _ShardFile(folder, split, len(shards))
                current.write(f"{index:08d}-{_stem(item.name)}", item)
                item.data = None
                index += 1
                if current.count == shard_size:
                    shards.append(current.close())
                    current = None
    if current is not None:
        shards.append(current.close())
    return {"count": index, "shards": shards, "skipped": skipped}


def write_shards(
    spec: str | Path,
    out: str | Path,
    *,
    shard_size: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Write the train and val splits of any data source as shards in the folder `out`.

    `shard_size` samples per shard; `seed` orders the train samples; `workers` decode threads
    (default: the CPU count, at most 8). Returns `out`, which appears only when complete.
    """
    from tqdm import tqdm

    if shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {shard_size}")
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"{out} exists and is not empty; pass --force to replace it")
    source = open_data(spec)
    splits = [s for s in SPLITS if source.has_split(s)]
    if "train" not in splits:
        raise UserError(f"{source.describe()} has no train split to shard")
    workers = workers or min(os.cpu_count() or 1, 8)
    records = {}
    with staging_dir(out, replace=force) as tmp:
        for split in splits:
            items = _items(source, str(spec), split)
            if split == "train" and source.kind != SHARDS:
                listed = list(items)
                order = np.random.default_rng(seed).permutation(len(listed))
                items = iter([listed[i] for i in order])
            with tqdm(unit="img", desc=f"shard {split}", disable=quiet or None) as bar:
                records[split] = _write_split(items, tmp, split, shard_size, workers, bar)
            if records[split]["count"] == 0:
                raise UserError(f"no decodable {split} image in {source.describe()}")
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in source.classes))
        (tmp / "class_names.txt").write_text("".join(f"{c}\n" for c in source.class_names))
        manifest = {
            "format": MANIFEST_FORMAT,
            "classes": source.num_classes,
            "class_names": list(source.class_names),
            "source": source.location,
            "seed": seed,
            "shard_size": shard_size,
            "splits": records,
        }
        write_json(tmp / "manifest.json", manifest)
    if not quiet:
        counts = ", ".join(
            f"{s} {r['count']} in {len(r['shards'])} shard(s)" for s, r in records.items()
        )
        skipped = sum(len(r["skipped"]) for r in records.values())
        note = (
            f"; {skipped} undecodable image(s) left out (listed in manifest.json)"
            if skipped
            else ""
        )
        print(f"wrote {out}: {source.num_classes} classes; {counts}{note}", file=sys.stderr)
    return out
