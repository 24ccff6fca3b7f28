"""Undecodable samples: each named once, counted per epoch, held to the run's policy.

The one counter of every loader: the map-style training loader, the shard stream and the
evaluation loader all pass their chunks through `BadSamples.count`.

The policy (``bad_samples``, `parse_bad_samples`) is how many undecodable samples of a split a
run accepts in an epoch: a count of files (``5``), or a percentage of the split (``1%``, the
default), which accepts at least one file whatever the split's size (unless it is ``0%``). A
split's bad samples are its distinct files: a file read by each of the four passes of an epoch
is one. The images Tiny ImageNet's prepare left out count as bad samples of their split too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from maxvit.errors import UserError

DEFAULT_BAD_SAMPLES = "1%"
BAD_UNKNOWN_AFTER = 1000  # with the split size unknown, judge a percentage from this many reads


@dataclass(frozen=True)
class BadPolicy:
    """How many undecodable samples of a split an epoch accepts: `count` files, or `percent`
    of the split's samples (at least one, unless `percent` is 0)."""

    text: str  # as given: "5", "1%"
    count: int | None = None
    percent: float | None = None

    def allowed(self, size: int) -> int:
        """Bad samples accepted in a split of `size` samples."""
        if self.count is not None:
            return self.count
        return max(1, math.floor(self.percent * size / 100)) if self.percent else 0


def parse_bad_samples(value: int | str) -> BadPolicy:
    """The policy `value` gives: a count of files (5, "5") or a percentage of the split ("1%",
    "0.5%"); `UserError` for anything else."""
    text = str(value).strip()
    try:
        if isinstance(value, bool):
            raise ValueError
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= 100:
                raise ValueError
            return BadPolicy(text, percent=percent)
        count = int(text)
        if count < 0:
            raise ValueError
        return BadPolicy(text, count=count)
    except ValueError:
        raise UserError(
            f"bad_samples must be a count of files (5) or a percentage of the split (1%), got "
            f"{value!r}"
        ) from None


class BadSamples:
    """Counts the samples of one split that could not be decoded, across epochs.

    ``count(chunks)`` passes a loader's chunks through, counting their failures, and
    ``new_epoch(expected)`` starts an epoch's count. ``add(read, failed)`` records `read`
    samples read, of which `failed` ((name, error) pairs) were left out. Every bad file is
    named on stderr the first time it fails. ``allow(policy, known)`` sets the policy and the
    split's files known to be bad before loading (`known`: left out when it was prepared),
    which count in every epoch. Raises `UserError` when the distinct bad files of the current
    epoch are more than the policy allows of the split's size (`expected`, this rank's share of
    the split, plus the known ones), or, where that is unknown, of the samples read, once
    `BAD_UNKNOWN_AFTER` have been read (a count is judged at once).
    """

    def __init__(self, split: str, expected: int | None = None, rank: int = 0, world: int = 1):
        self.split = split
        self.prefix = f"rank {rank}: " if world > 1 else ""
        self.policy = parse_bad_samples(DEFAULT_BAD_SAMPLES)
        self.known: list[tuple[str, str]] = []
        self.named: set[str] = set()
        self.new_epoch(expected)

    def allow(self, policy: BadPolicy, known: Iterable[tuple[str, str]] = ()) -> None:
        """Hold the split to `policy`, with the bad files `known` before loading."""
        self.policy = policy
        self.known = list(known)

    def new_epoch(self, expected: int | None) -> None:
        """Start counting an epoch of a rank whose share of the split is `expected` samples
        (None: unknown)."""
        self.expected = expected
        self.read = 0
        self.failed: set[str] = set()
        self.add(0, self.known)

    def count(self, chunks: Iterable[tuple]) -> Iterator[tuple]:
        """Each chunk ``(..., labels, failed)`` without its failures, which are counted (`add`)."""
        for *chunk, failed in chunks:
            self.add(len(chunk[-1]) + len(failed), failed)
            yield tuple(chunk)

    def add(self, read: int, failed: Iterable[tuple[str, str]]) -> None:
        self.read += read
        for name, error in failed:
            self.failed.add(name)
            if name not in self.named:
                self.named.add(name)
                print(f"{self.prefix}skipped {name}: {error}", file=sys.stderr, flush=True)
        if not self.failed:
            return
        if self.expected is not None:
            size = self.expected + len(self.known)
        elif self.read >= BAD_UNKNOWN_AFTER or self.policy.count is not None:
            size = self.read + len(self.known)
        else:
            return
        allowed = self.policy.allowed(size)
        if len(self.failed) > allowed:
            raise UserError(
                f"{len(self.failed)} of {size} {self.split} samples could not be decoded, more "
                f"than bad_samples={self.policy.text} allows ({allowed}); check the data with "
                "`maxvit data verify`, or accept them with --set bad_samples=N (a count, or a "
                "percentage such as 5%)"
            )

    def report(self) -> str | None:
        """A line counting this epoch's skipped samples, or None when there were none."""
        if not self.failed:
            return None
        return (
            f"{self.prefix}skipped {len(self.failed)} undecodable {self.split} sample(s) this "
            f"epoch ({len(self.named)} in all)"
        )
