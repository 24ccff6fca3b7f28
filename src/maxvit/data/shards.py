"""WebDataset shards: name them, find their neighbours, read their samples with `webdataset`.

(:mod:`maxvit.data.shard_source` opens a shard data set; :mod:`maxvit.data.shard_index` finds
how many samples each shard holds; :mod:`maxvit.data.stream` splits the shards over ranks and
workers.)

Conventions (webdataset's and timm's): a shard is a tar file whose members are grouped into
samples by ``__key__`` (the name up to the first dot); the image bytes are under their
extension (jpg, jpeg, png or webp), the class index under ``cls`` (ASCII digits) or, failing
that, as the ``label`` key of a ``json`` member; the class names, one per line in label order,
in ``classes.txt`` beside the shards. A shard's split is a word of its file name:
``train-000000.tar``, ``in1k-train-000123.tar``, ``imagenet1k-validation-00.tar``.

A shard data set is given as a local folder, or as a brace pattern, URL or ``pipe:`` command
that names the shards of both splits, e.g.
``pipe:aws s3 cp s3://bucket/in1k/{train-{000000..001023},val-{000000..000063}}.tar -``.
Each expanded name is assigned to its split by the shard's file name; the files beside the
shards (``classes.txt``, ``manifest.json``, ``_info.json``) are read through the same command
with the shard's file name replaced.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.data.images import ImageError
from maxvit.errors import UserError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # where a sample's image bytes may be
SPLIT_WORDS = {"train": ("train",), "val": ("val", "valid", "validation")}
URL_TIMEOUT = 20.0  # seconds to wait for a file beside URL shards before giving up
_SHARD_NAME = re.compile(r"[^\s/'\"]+\.(?:tar|parquet|arrow)\b")

Samples = Callable[[str, list[tuple[str, str]]], Iterator[dict[str, Any]]]


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


def split_of(name: str) -> str | None:
    """The split a file name's words name (train; val, valid or validation), or None when
    they name none or both."""
    words = set(re.findall(r"[a-z]+", name.lower().rsplit(".", 1)[0]))
    found = [split for split, names in SPLIT_WORDS.items() if words & set(names)]
    return found[0] if len(found) == 1 else None


def read_text(url: str) -> str | None:
    """A small text file beside the shards (local path, URL or pipe: command), or None where
    there is none. An http(s) address that cannot be reached within `URL_TIMEOUT` seconds is a
    one-line `UserError` (webdataset's curl would retry for a minute), as is a file that is not
    UTF-8 text."""
    data = _read_bytes(url)
    try:
        return None if data is None else data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{url} is not UTF-8 text (damaged?)") from None


def _read_bytes(url: str) -> bytes | None:
    if url.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise UserError(f"cannot read {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"cannot reach {url}: {reason}") from None
    if not url.startswith("pipe:") and "://" not in url:
        try:
            return Path(url).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserError(f"cannot read {url}: {exc.strerror or exc}") from None
    from webdataset.gopen import gopen

    try:
        stream = gopen(url, "rb")
        try:
            return stream.read()
        finally:
            stream.close()  # a pipe: command's non-zero exit raises here
    except OSError:
        return None  # the command found no such file (or failed: the shards will say so)


# --------------------------------------------------------------------------------------------
# Reading samples


def samples(url: str, errors: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The raw samples (dicts of bytes) of one shard, in order, via webdataset's tar reader.

    A shard that cannot be opened or ends early is recorded in `errors` as (name, message)
    and reading goes on with the next one.
    """
    from webdataset.tariterators import tarfile_samples

    def handler(exc: BaseException) -> bool:
        errors.append((shard_name(url), _one_line(exc)))
        return False  # stop this shard; the stream continues with the next shard

    return tarfile_samples([{"url": url}], handler=handler)


def _one_line(exc: BaseException) -> str:
    """What went wrong reading a shard, without a subprocess's argument tuple."""
    if isinstance(exc, OSError) and exc.strerror:  # not "FileNotFoundError: 2"
        return exc.strerror
    text = str(exc.args[0] if exc.args else exc)
    status = re.search(r"\): exit (\d+) \(read\)", text)  # webdataset's Pipe: "(args): exit N"
    if status:
        return f"its download or pipe: command exited with status {status.group(1)}"
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class ShardSplit:
    """The shards of one split, in their canonical order."""

    urls: tuple[str, ...]  # local paths, URLs or pipe: commands, one per shard
    counts: tuple[int, ...] | None  # samples per shard, when known
    read: Samples = samples  # url -> its raw samples (tar shards; parquet row groups...)
    sample_bytes: int | None = None  # mean bytes of a sample as stored, when known

    @property
    def size(self) -> int | None:
        """Samples in the split, when known."""
        return sum(self.counts) if self.counts is not None else None


class SampleError(ImageError):
    """A shard sample without an image or without a valid class label."""


def label_of(sample: dict[str, Any]) -> int:
    """The class index of a raw sample: its ``cls``, else the ``label`` of its ``json``."""
    if "cls" in sample:
        value = sample["cls"]
        if isinstance(value, int):
            return value
        try:
            return int(value.decode().strip())
        except (UnicodeDecodeError, ValueError):
            raise SampleError(f"cls is not an integer ({value[:20]!r})") from None
    if "json" not in sample:
        raise SampleError("no label (no cls, no json with a label key)")
    try:
        label = json.loads(sample["json"])["label"]
    except (ValueError, TypeError, KeyError):
        raise SampleError("no label (its json has no label key)") from None
    if not isinstance(label, int) or isinstance(label, bool):
        raise SampleError(f"json label is not an integer ({str(label)[:20]!r})")
    return label


def decode_sample(sample: dict[str, Any], num_classes: int) -> tuple[str, bytes, int]:
    """(image key, image bytes, label) of a raw shard sample; `SampleError` naming what is wrong."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise SampleError(f"no image (none of {', '.join(IMAGE_KEYS)})")
    label = label_of(sample)
    if not 0 <= label < num_classes:
        raise SampleError(f"label {label} is outside 0..{num_classes - 1}")
    return key, sample[key], label


def sample_name(sample: dict[str, Any]) -> str:
    url = sample.get("__url__", "")
    return f"{shard_name(url)}:{sample.get('__key__')}" if url else str(sample.get("__key__"))
