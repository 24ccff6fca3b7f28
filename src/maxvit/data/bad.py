"""Counting undecodable samples: name the first few, stop when more than 1% of a split fail."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from maxvit.errors import UserError

BAD_LIMIT = 0.01  # stop when more than this fraction of a split's samples cannot be decoded
BAD_UNKNOWN_AFTER = 1000  # with the split size unknown, judge the fraction from this many reads
BAD_NAMED = 5  # bad samples named in the log (per loader); the rest are counted


class BadSamples:
    """Counts the samples of one split that could not be decoded, across epochs.

    ``add(read, failed)`` records `read` samples read, of which `failed` ((name, error) pairs)
    were left out. The first `BAD_NAMED` are named on stderr, then a count is kept. Raises
    `UserError` when the failures of the current epoch exceed `BAD_LIMIT` of the split's size
    (`expected`, the samples this rank reads per epoch), or, where that is unknown, of the
    samples read once `BAD_UNKNOWN_AFTER` have been read.
    """

    def __init__(self, split: str, expected: int | None = None, rank: int = 0, world: int = 1):
        self.split = split
        self.expected = expected
        self.prefix = f"rank {rank}: " if world > 1 else ""
        self.named = 0
        self.total = 0
        self.new_epoch()

    def new_epoch(self) -> None:
        self.read = 0
        self.failed = 0

    def add(self, read: int, failed: Iterable[tuple[str, str]]) -> None:
        self.read += read
        for name, error in failed:
            self.failed += 1
            self.total += 1
            if self.named < BAD_NAMED:
                self.named += 1
                more = "; further bad samples are counted" if self.named == BAD_NAMED else ""
                print(f"{self.prefix}skipped {name}: {error}{more}", file=sys.stderr, flush=True)
        if self.failed == 0:
            return
        limit_of = self.expected if self.expected else self.read
        if (self.expected or self.read >= BAD_UNKNOWN_AFTER) and self.failed > BAD_LIMIT * limit_of:
            raise UserError(
                f"{self.failed} of {limit_of} {self.split} samples could not be decoded (more "
                f"than {BAD_LIMIT:.0%}); check the data with `maxvit data verify`"
            )

    def report(self) -> str | None:
        """A line counting this epoch's skipped samples, or None when there were none."""
        if not self.failed:
            return None
        return (
            f"{self.prefix}skipped {self.failed} undecodable {self.split} sample(s) this epoch "
            f"({self.total} in all)"
        )
