"""`maxvit data shard`: write WebDataset shards from any data source.

Output (``DIR``), in webdataset's and timm's conventions (see :mod:`maxvit.data.shards`):
``train-000000.tar ...``, ``val-000000.tar ...``, ``classes.txt`` (class ids in label order),
``class_names.txt`` and ``manifest.json`` (per shard: sample count, bytes, sha256; the
samples left out; the sha256 of ``classes.txt``). A sample is ``<key>.<ext>`` (the image
file's own bytes, never re-encoded, except Tiny ImageNet given as a prepared folder, whose
arrays become PNG) plus ``<key>.cls``. Keys are ``<8-digit index>-<source file stem>``.

Every image is decoded once to check it; an undecodable one is left out, named on stderr and
listed in the manifest. Train samples are shuffled (seeded) before they are cut into shards,
so that a shard holds many classes and a streaming shuffle buffer mixes well; val keeps its
order. (A shard source or a Hugging Face dataset is re-written in its own order: a stream
cannot be permuted without reading it all first.) The folder appears atomically when complete (`maxvit.files.staging_dir`): a
full disk, an error, SIGINT or SIGTERM remove the unfinished folder and end in one line naming
`out`.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from maxvit.data.items import Item, checked
from maxvit.data.shard_index import MANIFEST_FORMAT, classes_sha256
from maxvit.data.source import LABELLED_SPLITS, DataSource
from maxvit.data.sources import open_data
from maxvit.errors import UserError, signals_interrupt
from maxvit.files import WriteError, sha256_file, staging_dir, write_json


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "_", base.rsplit(".", 1)[0])[:60]


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

    def abandon(self) -> None:
        """Close after a failure (a full disk...) without raising again: the tar stream is
        marked closed, so that garbage collection does not try to flush it once more."""
        for close in (self._writer.close, self._file.close):
            try:
                close()
            except OSError:
                pass

    def close(self) -> dict:
        self._writer.close()
        self._file.close()
        return {
            "name": self.name,
            "count": self.count,
            "bytes": self.path.stat().st_size,
            "sha256": sha256_file(self.path),
        }


def _write_shards(
    items: Iterator[Item], folder: Path, split: str, shard_size: int, workers: int, bar
) -> dict:
    """Write one split's shards; returns its manifest record."""
    shards: list[dict] = []
    skipped: list[dict] = []
    current: _ShardFile | None = None
    index = 0
    try:
        for item, error in checked(items, workers):
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
            current = None
    except BaseException:
        if current is not None:
            current.abandon()
        raise
    return {"count": index, "shards": shards, "skipped": skipped}


def _write_all(
    source: DataSource,
    tmp: Path,
    splits: list[str],
    shard_size: int,
    seed: int,
    workers: int,
    quiet: bool,
) -> dict[str, dict]:
    """Write every split's shards, the class lists and the manifest into `tmp`; returns the
    manifest's split records."""
    from tqdm import tqdm

    records = {}
    for split in splits:
        items = source.items(split)
        if split == "train" and source.shuffle_to_shard:
            listed = list(items)
            order = np.random.default_rng(seed).permutation(len(listed))
            items = iter([listed[i] for i in order])
        with tqdm(unit="img", desc=f"shard {split}", disable=quiet or None) as bar:
            records[split] = _write_shards(items, tmp, split, shard_size, workers, bar)
        if records[split]["count"] == 0:
            raise UserError(f"no decodable {split} image in {source.describe()}")
    classes = "".join(f"{c}\n" for c in source.classes)
    (tmp / "classes.txt").write_text(classes)
    (tmp / "class_names.txt").write_text("".join(f"{c}\n" for c in source.class_names))
    manifest = {
        "format": MANIFEST_FORMAT,
        "classes": source.num_classes,
        "class_names": list(source.class_names),
        "classes_sha256": classes_sha256(classes),
        "source": source.location,
        "seed": seed,
        "shard_size": shard_size,
        "splits": records,
    }
    write_json(tmp / "manifest.json", manifest)
    return records


def _cannot_write(out: Path, exc: OSError, written: int | None) -> str:
    """One line for a write of `out` that failed, naming `out` (not its temporary folder, which
    is removed); on a full disk, how much had been written."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC and written is not None:
        reason += f" after {written / 2**20:.1f} MiB of shards"
    elif isinstance(exc, WriteError):  # its reason may name a file in the way
        reason = exc.reason
    return f"cannot write the shards to {out}: {reason}; nothing was kept"


def _check_out(out: Path, spec: str | Path, force: bool) -> None:
    """`out` can take the shards: absent or empty, or with `force` a folder of shards (never a
    file or another folder, which --force would delete), and outside a local source folder
    (where the shards would be read as part of the source)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UserError(f"{out} exists and is not empty; pass --force to replace it")
        if not (out / "manifest.json").is_file():
            raise UserError(f"{out} holds no shards (no manifest.json); choose another --out")
    local = Path(str(spec)).expanduser().absolute()
    if local.is_dir() and out.is_relative_to(local):
        raise UserError(f"--out {out} is inside the source {local}; choose a folder outside it")


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
    for flag, value in (("--shard-size", shard_size), ("--workers", workers)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    out = Path(out).expanduser().absolute()
    _check_out(out, spec, force)
    source = open_data(spec)
    odd = next((c for c in source.classes if not c.isprintable() or c != c.strip()), None)
    if odd is not None:  # classes.txt holds one class per line, stripped
        raise UserError(f"class {odd!r} of {source.describe()} cannot be a line of classes.txt")
    splits = [s for s in LABELLED_SPLITS if source.has_split(s)]
    if "train" not in splits:
        raise UserError(f"{source.describe()} has no train split to shard")
    workers = workers or min(os.cpu_count() or 1, 8)
    try:
        with signals_interrupt(f"writing {out}; its unfinished shards were removed"):
            with staging_dir(out, replace=force) as tmp:
                try:
                    records = _write_all(source, tmp, splits, shard_size, seed, workers, quiet)
                except OSError as exc:
                    written = sum(p.stat().st_size for p in tmp.iterdir())
                    raise UserError(_cannot_write(out, exc, written)) from None
    except OSError as exc:  # making or renaming the folder
        raise UserError(_cannot_write(out, exc, None)) from None
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
