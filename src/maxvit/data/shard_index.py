"""How many samples each shard holds, and whether the shards are still those their manifest
describes.

Three sources of counts, in this order:

* ``manifest.json`` beside the shards (format ``maxvit-shards/1``, written by
  ``maxvit data shard``): per shard its sample count, bytes and sha256, and the sha256 of
  ``classes.txt``. `check_manifest` holds the shards to it when they are opened: every listed
  shard present with its size, no unlisted one, ``classes.txt`` unchanged. ``maxvit data
  verify`` also checks each shard's count and sha256.
* timm's ``_info.json`` (``timm/data/readers/reader_wds.py``): ``{"splits": {NAME:
  {"filenames": [...], "shard_lengths": [...], ...}}}``.
* Neither: one streaming pass over the shards counts the samples and finds the highest label
  (`count_shards`). The result is cached in ``maxvit-counts.json`` beside the shards when that
  folder is writable, else in ``$XDG_CACHE_HOME/maxvit/shard-counts-<hash>.json`` (so also for
  URLs and ``pipe:`` commands); a local shard's entry is reused while its size and
  modification time are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.data.shards import SampleError, label_of, read_text, samples, shard_name
from maxvit.errors import UserError
from maxvit.files import cache_root, writable, write_json

MANIFEST_FORMAT = "maxvit-shards/1"
COUNTS_FORMAT = "maxvit-shard-counts/1"
COUNTS_FILE = "maxvit-counts.json"
RESHARD = "restore the shards as written, or re-shard with `maxvit data shard SRC --out DIR`"


def classes_sha256(text: str) -> str:
    """The hash of a classes.txt as the manifest records it."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a ``maxvit data shard`` manifest says about its shards."""

    where: str  # the manifest's path or URL, for messages
    shards: dict[str, dict[str, Any]]  # shard file name -> {"count", "bytes", "sha256"}
    classes_sha256: str | None  # None in manifests written before it was recorded
    class_names: tuple[str, ...] | None

    def counts(self) -> dict[str, int]:
        return {name: record["count"] for name, record in self.shards.items()}


def read_manifest(url: str) -> Manifest | None:
    """The manifest at `url`; None where there is none, or where the file is another tool's
    JSON (no maxvit format tag). A damaged one is a `UserError` naming it."""
    text = read_text(url)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise UserError(f"{url} is not valid JSON (damaged?); {RESHARD}") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("maxvit-"):
        return None
    if data["format"] != MANIFEST_FORMAT:
        raise UserError(f"{url} has format {data['format']!r}, not {MANIFEST_FORMAT}; {RESHARD}")
    try:
        shards = {
            str(s["name"]): {
                "count": _count(s["count"]),
                "bytes": int(s["bytes"]),
                "sha256": s["sha256"],
            }
            for split in data["splits"].values()
            for s in split["shards"]
        }
        digest = data.get("classes_sha256")
        names = data.get("class_names")
        if names is not None and not all(isinstance(n, str) for n in names):
            raise TypeError("class_names")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{url} is damaged (bad or missing {exc}); {RESHARD}") from None
    return Manifest(url, shards, digest, tuple(names) if names is not None else None)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("count")
    return value


def check_manifest(
    manifest: Manifest, urls: Sequence[str], folder: Path | None, classes: tuple[str, str | None]
) -> None:
    """Refuse shards that are no longer those `manifest` describes: a changed ``classes.txt``
    (`classes` is its (location, text)) and, for a local `folder`, a listed shard missing or
    a shard the manifest does not list. Cheap: no shard is read."""
    where, text = classes
    if manifest.classes_sha256 is not None:
        if text is None:
            raise UserError(f"{where} is missing; {manifest.where} records it; {RESHARD}")
        if classes_sha256(text) != manifest.classes_sha256:
            raise UserError(
                f"{where} is not the classes.txt these shards were written with (its sha256 "
                f"differs from the one in {manifest.where}: reordered or edited?); {RESHARD}"
            )
    if folder is None:
        return
    names = {shard_name(url) for url in urls}
    missing = sorted(set(manifest.shards) - names)
    if missing:
        raise UserError(
            f"{folder}/{missing[0]} is missing ({len(missing)} of the {len(manifest.shards)} "
            f"shards listed in manifest.json are); {RESHARD}"
        )
    unlisted = sorted(names - set(manifest.shards))
    if unlisted:
        raise UserError(
            f"{folder}/{unlisted[0]} is not listed in manifest.json ({len(unlisted)} such "
            f"shard(s)); move it away, or {RESHARD}"
        )


def check_sizes(recorded: dict[str, dict[str, Any]], urls: Sequence[str]) -> None:
    """Refuse a local shard whose size is not the one its manifest records (training and
    evaluation; ``maxvit data verify`` names every bad sample instead)."""
    for url in urls:
        record = recorded.get(shard_name(url))
        if record is not None and os.path.isfile(url):
            size = os.path.getsize(url)
            if size != record["bytes"]:
                raise UserError(
                    f"{url} has {size} bytes; manifest.json says {record['bytes']} (changed "
                    f"since it was written?); check it with `maxvit data verify`; {RESHARD}"
                )


def read_timm_info(url: str) -> dict[str, int]:
    """Shard file name -> sample count from timm's ``_info.json`` at `url` (empty without one)."""
    text = read_text(url)
    if text is None:
        return {}
    try:
        counts = {}
        for split in json.loads(text)["splits"].values():
            pairs = zip(split["filenames"], split["shard_lengths"], strict=True)
            counts |= {str(name).rsplit("/", 1)[-1]: _count(n) for name, n in pairs}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(
            f"{url} is not timm's _info.json format ({type(exc).__name__}: {exc}); fix or delete it"
        ) from None
    return counts


# --------------------------------------------------------------------------------------------
# Counting pass, cached


def count_shards(urls: Sequence[str], location: str) -> list[tuple[int, int]]:
    """(samples, highest label or -1) of each shard, from the cache or one streaming pass over
    the shards not cached yet (which then are)."""
    cache = _cache_file(location)
    cached = _read_cache(cache)
    todo = [url for url in urls if not _fresh(cached.get(shard_name(url)), url)]
    if todo:
        print(
            f"counting the samples of {len(todo)} shard(s) in one pass (no manifest.json, or no "
            f"_info.json and classes.txt, beside them); the counts go to {cache}",
            file=sys.stderr,
            flush=True,
        )
        with ThreadPoolExecutor(min(len(todo), os.cpu_count() or 1, 8)) as pool:
            for url, (count, top) in zip(todo, pool.map(_count_one, todo), strict=True):
                cached[shard_name(url)] = {"count": count, "top_label": top, "stamp": _stamp(url)}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, {"format": COUNTS_FORMAT, "shards": cached})
        except OSError:
            pass  # a cache only: the counts are right, the next start counts again
    entries = [cached[shard_name(url)] for url in urls]
    return [(e["count"], e["top_label"]) for e in entries]


def _count_one(url: str) -> tuple[int, int]:
    errors: list[tuple[str, str]] = []
    count, top = 0, -1
    for sample in samples(url, errors):
        count += 1
        try:
            top = max(top, label_of(sample))
        except SampleError:
            pass  # counted; training skips it as a bad sample
    if errors:
        raise UserError(f"cannot count the samples of shard {errors[0][0]}: {errors[0][1]}")
    return count, top


def _fresh(entry: dict[str, Any] | None, url: str) -> bool:
    """A cached entry still describes the shard: a local one's size and mtime are unchanged
    (a remote one cannot be asked cheaply and is taken as it is)."""
    return entry is not None and entry["stamp"] == _stamp(url)


def _stamp(url: str) -> list[int] | None:
    """(bytes, modification time) of a local shard; None for URLs and pipe: commands."""
    try:
        stat = os.stat(url)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _cache_file(location: str) -> Path:
    folder = Path(location)
    if folder.is_dir() and writable(folder):
        return folder / COUNTS_FILE
    digest = hashlib.sha1(location.encode()).hexdigest()[:12]
    return cache_root() / f"shard-counts-{digest}.json"


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cached entries (shard name -> count, top label, stamp); empty when the cache is
    missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        if data["format"] != COUNTS_FORMAT:
            return {}
        return {
            str(name): {
                "count": _count(e["count"]),
                "top_label": int(e["top_label"]),
                "stamp": e["stamp"],
            }
            for name, e in data["shards"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
