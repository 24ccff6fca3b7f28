"""`maxvit ARGS` for torchrun that records the labels each rank trains on, per epoch.

For test_ddp.py: the shards there give every sample its own class, so the labels name the
samples. Writes ``RUN/seen-rank<R>.json``: {epoch: [labels in order]}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from maxvit.cli import main
from maxvit.data import stream

seen: dict[int, list[int]] = {}
_batches = stream.ShardTrainLoader._batches


def _recording(self, *args, **kwargs):
    for images, labels, kind in _batches(self, *args, **kwargs):
        seen.setdefault(self.epoch, []).extend(labels.tolist())
        yield images, labels, kind


stream.ShardTrainLoader._batches = _recording

if __name__ == "__main__":
    code = main(sys.argv[1:])
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    (out / f"seen-rank{os.environ['RANK']}.json").write_text(json.dumps(seen))
    sys.exit(code)
