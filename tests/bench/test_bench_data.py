"""`maxvit bench data` runs end to end on each kind of source and prints its summary lines
(no timing asserted: the figures come from the benchmark, not the tests)."""

from __future__ import annotations

import argparse
import re

import pytest

from maxvit.bench import data as bench_data
from maxvit.data.prepare import prepare
from maxvit.errors import UserError


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    bench_data.add_arguments(parser)
    return bench_data.run(parser.parse_args(list(argv)))


def test_prepared_tiny_imagenet_reports_images_per_worker(synthetic_archive, tmp_path, capsys):
    root = prepare(synthetic_archive, tmp_path / "prepared", quiet=True)
    args = ["--source", str(root), "--batches", "3", "--warmup", "1", "--batch-size", "16"]
    assert run(*args, "--img-size", "64", "--workers", "0") == 0
    out = capsys.readouterr().out
    assert re.search(r"^train pipeline: \d+ images/s per worker$", out.strip().splitlines()[-1])
    assert "evaluation" in out and "BatchAugment" in out


def test_full_size_images_are_compared_with_timm(synthetic_tree, capsys):
    args = ["--source", str(synthetic_tree), "--pipeline", "timm", "--img-size", "48"]
    assert run(*args, "--images", "12", "--batch-size", "6", "--rounds", "2") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "12 images in memory, batch 6, 2 rounds" in lines[0]
    assert sum(line.startswith("  round ") for line in lines) == 2
    assert re.fullmatch(r"train pipeline: \d+ images/s per worker", lines[3])
    assert re.fullmatch(
        r"per-batch part \(RandAugment, mixing, erasing, normalisation\) on cpu: \d+ images/s",
        lines[4],
    )
    assert re.fullmatch(
        r"vs timm create_transform: \d+\.\d\d x \(\d+ images/s per core\)", lines[-1]
    )


def test_bad_options_and_empty_splits_are_errors(synthetic_archive, tmp_path):
    with pytest.raises(UserError, match="--batches"):
        run("--source", str(tmp_path), "--batches", "0")
    root = prepare(synthetic_archive, tmp_path / "prepared", quiet=True)
    with pytest.raises(UserError, match="batch size"):  # 400 train images, batch 1000
        run("--source", str(root), "--batches", "1", "--batch-size", "1000")


def test_an_empty_val_split_is_an_error_not_a_hang(tmp_path):
    from maxvit.data.synthetic import make_synthetic_archive

    archive = make_synthetic_archive(tmp_path / "tiny-imagenet-200.zip", val_per_class=0)
    root = prepare(archive, tmp_path / "prepared", quiet=True)
    with pytest.raises(UserError, match="the val split gives no batch"):
        run("--source", str(root), "--batches", "1", "--warmup", "0", "--batch-size", "16")
