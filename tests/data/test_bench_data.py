"""`maxvit bench data` runs end to end and ends with its summary line (no timing asserted)."""

from __future__ import annotations

import argparse
import re

from maxvit.bench import data as bench_data
from maxvit.data.prepare import prepare


def test_bench_data_reports_images_per_worker(synthetic_archive, tmp_path, capsys):
    root = prepare(synthetic_archive, tmp_path / "prepared", quiet=True)
    parser = argparse.ArgumentParser()
    bench_data.add_arguments(parser)
    args = parser.parse_args(
        [
            "--source",
            str(root),
            "--batches",
            "3",
            "--warmup",
            "1",
            "--batch-size",
            "16",
            "--img-size",
            "64",
            "--workers",
            "0",
        ]
    )
    assert bench_data.run(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^train pipeline: \d+ images/s per worker$", out.strip().splitlines()[-1])
    assert "evaluation" in out and "BatchAugment" in out
