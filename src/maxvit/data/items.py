"""A sample as encoded bytes, from any source: what `maxvit data shard` writes and
`maxvit data verify` decodes.

Every data source lists the samples of a split as items (``DataSource.items``); `checked`
decodes them a block at a time on threads and says what is wrong with each. This module does
not import torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from maxvit.data.images import ImageError, decode_rgb

WRITABLE = ("jpg", "png", "webp")  # image types a shard sample may hold
_BLOCK = 256  # items decoded in parallel at a time


@dataclass
class Item:
    """One sample: where it came from, its label and its bytes (read lazily)."""

    name: str  # source file or shard:key, for messages
    ext: str  # jpg, png or webp
    label: int
    read: Callable[[], bytes] | None = None  # gives the bytes, when `data` is not given
    data: bytes | None = None
    error: str | None = None  # a problem found while reading the source

    def bytes(self) -> bytes:
        """The encoded image, read once (then kept in `data`)."""
        if self.data is None:
            self.data = self.read()
        return self.data


def ext_of(name: str) -> str:
    """The image type of a file name or shard key (jpeg -> jpg)."""
    suffix = name.rsplit(".", 1)[-1].lower()
    return "jpg" if suffix in ("jpg", "jpeg") else suffix


def failed_item(name: str, error: str) -> Item:
    """A sample the source could not give (unreadable shard, sample without an image...)."""
    return Item(name, "", -1, error=error)


def check(item: Item) -> str | None:
    """Read the item's bytes (into `data`) and decode them: the problem, or None."""
    if item.error is not None:
        return item.error
    try:
        data = item.bytes()
        if item.ext not in WRITABLE:
            return f"unsupported image type .{item.ext} (use JPEG, PNG or WebP)"
        decode_rgb(data, item.name)
    except (OSError, ImageError) as exc:
        return str(exc)
    return None


def checked(items: Iterable[Item], workers: int) -> Iterator[tuple[Item, str | None]]:
    """(item, problem or None) for each item, in order, checked `workers` at a time."""
    items = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        while block := list(itertools.islice(items, _BLOCK)):
            yield from zip(block, pool.map(check, block), strict=True)
