"""WebDataset shards: find them, read them with `webdataset`, split them over ranks and workers.

Conventions (webdataset's and timm's): a shard is a tar file whose members are grouped into
samples by ``__key__`` (the name without extension); the image bytes are under their
extension (jpg, jpeg, png or webp), the class index under ``cls`` (ASCII digits), and the
class names, one per line in label order, in ``classes.txt`` beside the shards. Shard names
start with their split: ``train-000000.tar``, ``val-000000.tar``. ``manifest.json`` beside
them (written by ``maxvit data shard``) gives the sample count of every shard; without it the
counts are unknown (see docs/data.md for what that changes).

A shard data set is given as a local folder, or as a brace pattern, URL or ``pipe:`` command
that names the shards of both splits, e.g.
``pipe:aws s3 cp s3://bucket/in1k/{train-{000000..001023},val-{000000..000063}}.tar -``.
Each expanded name is assigned to its split by the shard's file name; ``classes.txt`` and
``manifest.json`` are read through the same command with the shard's file name replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.errors import UserError

MANIFEST_FORMAT = "maxvit-shards/1"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # where a sample's image bytes may be
SPLIT_PREFIXES = {"train": ("train",), "val": ("val", "validation")}
_SHARD_NAME = re.compile(r"[^\s/'\"]+\.tar\b")


@dataclass(frozen=True)
class ShardSplit:
    """The shards of one split, in their canonical order."""

    urls: tuple[str, ...]  # local paths, URLs or pipe: commands, one per shard
    counts: tuple[int, ...] | None  # samples per shard, when a manifest gives them

    @property
    def size(self) -> int | None:
        """Samples in the split, when known."""
        return sum(self.counts) if self.counts is not None else None


def is_shard_pattern(text: str) -> bool:
    """A brace pattern, URL or pipe: command rather than a plain local path."""
    return text.startswith("pipe:") or "://" in text or bool(re.search(r"\{[^}]*(\.\.|,)", text))


def shard_name(url: str) -> str:
    """The file name of the shard a path, URL or pipe: command reads (``train-000001.tar``)."""
    names = _SHARD_NAME.findall(url)
    if not names:
        raise UserError(f"{url!r} names no .tar shard")
    return names[-1].rsplit("/", 1)[-1]


def beside(url: str, name: str) -> str:
    """The path, URL or pipe: command that reads file `name` next to the shard `url`."""
    shard = shard_name(url)
    at = url.rfind(shard)
    return url[:at] + name + url[at + len(shard) :]


def read_text(url: str) -> str:
    """Read a small text file through webdataset's opener (local path, URL or pipe:)."""
    from webdataset.gopen import gopen

    if not url.startswith("pipe:") and "://" not in url:
        return Path(url).read_text()
    stream = gopen(url, "rb")
    try:
        data = stream.read()
    finally:
        stream.close()  # a pipe: command's non-zero exit raises here
    return data.decode()


def split_of(name: str) -> str | None:
    for split, prefixes in SPLIT_PREFIXES.items():
        if any(name.startswith(p) and not name[len(p) : len(p) + 1].isalpha() for p in prefixes):
            return split
    return None


def read_manifest(url: str) -> dict[str, Any] | None:
    """The manifest beside the shards, or None where there is none (counts then unknown)."""
    try:
        manifest = json.loads(read_text(url))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def shard_counts(manifest: dict[str, Any] | None) -> dict[str, int]:
    """Shard file name -> sample count, from a manifest (empty without one)."""
    if manifest is None:
        return {}
    return {
        shard["name"]: int(shard["count"])
        for split in manifest.get("splits", {}).values()
        for shard in split.get("shards", [])
    }


# --------------------------------------------------------------------------------------------
# Reading samples


def samples(url: str, errors: list[tuple[str, str]]) -> Any:
    """The raw samples (dicts of bytes) of one shard, in order, via webdataset's tar reader.

    A shard that cannot be opened or ends early is recorded in `errors` as (name, message)
    and reading goes on with the next one.
    """
    from webdataset.tariterators import tarfile_samples

    def handler(exc: BaseException) -> bool:
        errors.append(
            (shard_name(url), f"{type(exc).__name__}: {exc.args[0] if exc.args else exc}")
        )
        return False  # stop this shard; the stream continues with the next shard

    return tarfile_samples([{"url": url}], handler=handler)


def decode_sample(sample: dict[str, Any], num_classes: int) -> tuple[bytes, int]:
    """(image bytes, label) of a raw shard sample; ValueError naming what is wrong."""
    image = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if image is None:
        raise ValueError(f"no image (none of {', '.join(IMAGE_KEYS)})")
    if "cls" not in sample:
        raise ValueError("no cls label")
    try:
        label = int(sample["cls"].decode().strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"cls is not an integer ({sample['cls'][:20]!r})") from None
    if not 0 <= label < num_classes:
        raise ValueError(f"cls {label} is outside 0..{num_classes - 1}")
    return image, label


def sample_name(sample: dict[str, Any]) -> str:
    url = sample.get("__url__", "")
    return f"{shard_name(url)}:{sample.get('__key__')}" if url else str(sample.get("__key__"))
