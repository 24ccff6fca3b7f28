"""`maxvit data shard` and `maxvit data verify`: round trip, bad images, atomic output."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from maxvit.cli import main
from maxvit.data import open_data
from maxvit.data.images import decode_rgb
from maxvit.data.synthetic import make_synthetic_tree
from maxvit.data.write_shards import write_shards
from maxvit.errors import UserError
from maxvit.files import sha256_file
from tests.data.util import run_cli


def read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    """key -> {extension: bytes} of one shard, read with tarfile (not with the code under test)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def test_round_trip_every_image_once_with_its_label(synthetic_tree, tmp_path):
    out = write_shards(synthetic_tree, tmp_path / "shards", shard_size=5, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "maxvit-shards/1" and manifest["classes"] == 4
    assert (out / "classes.txt").read_text().split() == [f"class_{i:02d}" for i in range(4)]
    assert manifest["classes_sha256"] == sha256_file(out / "classes.txt")
    source = open_data(synthetic_tree)
    for split, expected in (("train", 24), ("val", 8)):
        record = manifest["splits"][split]
        assert record["count"] == expected and record["skipped"] == []
        assert [s["count"] for s in record["shards"]] == [5] * (expected // 5) + (
            [expected % 5] if expected % 5 else []
        )
        originals = {}
        dataset = source.dataset(split)
        for path, label in zip(dataset.files, dataset.labels, strict=True):
            originals[path.read_bytes()] = int(label)
        seen = {}
        for shard in record["shards"]:
            samples = read_tar(out / shard["name"])
            assert len(samples) == shard["count"]
            for key, sample in samples.items():
                image = next(v for k, v in sample.items() if k != "cls")
                assert image not in seen  # once
                seen[image] = int(sample["cls"])
                assert key[:8].isdigit()
        assert seen == originals  # every image, byte for byte, with its label
    order = [
        int(k[:8]) for s in manifest["splits"]["train"]["shards"] for k in read_tar(out / s["name"])
    ]
    assert order == list(range(24))
    labels = [int(v["cls"]) for v in read_tar(out / "train-000000.tar").values()]
    assert labels != sorted(labels)  # train is shuffled before sharding


def test_tiny_imagenet_keeps_its_jpegs_and_shards_reshard(synthetic_archive, tmp_path):
    out = write_shards(synthetic_archive, tmp_path / "tiny", shard_size=150, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 400 and manifest["splits"]["val"]["count"] == 200
    assert "test" not in manifest["splits"]  # unlabelled
    first = read_tar(out / "train-000000.tar")
    assert all("jpg" in s for s in first.values())  # the archive's own JPEG bytes
    assert manifest["class_names"][0] == "thing 0, synthetic class 0"
    again = write_shards(out, tmp_path / "again", shard_size=400, quiet=True)
    record = json.loads((again / "manifest.json").read_text())["splits"]["train"]
    assert record["count"] == 400 and len(record["shards"]) == 1
    assert open_data(again).class_names == open_data(out).class_names


def test_corrupt_image_is_left_out_named_and_found_by_verify(tmp_path, capsys):
    tree = make_synthetic_tree(tmp_path / "tree", corrupt=True)
    bad = tree / "train" / "class_01" / "img_000.jpg"
    assert run_cli("verify", str(tree)) == 2
    captured = capsys.readouterr()
    assert f"bad: {bad}: cannot decode" in captured.out
    assert "1 bad entry of 32 checked" in captured.err
    out = write_shards(tree, tmp_path / "shards", shard_size=100, quiet=True)
    assert f"left out {bad}" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 23
    assert [s["name"] for s in manifest["splits"]["train"]["skipped"]] == [str(bad)]
    assert run_cli("verify", str(out)) == 0
    assert "OK (shards, 4 classes, 31 images decode)" in capsys.readouterr().out


def test_verify_names_bad_shard_entries(synthetic_tree, tmp_path, capsys):
    out = write_shards(synthetic_tree, tmp_path / "shards", shard_size=100, quiet=True)
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    shard = damaged / "train-000000.tar"
    samples = read_tar(shard)
    keys = sorted(samples)
    with tarfile.open(shard, "w") as tar:  # rewrite: one image truncated, one label missing
        for i, key in enumerate(keys):
            for ext, data in sorted(samples[key].items()):
                if i == 1 and ext != "cls":
                    data = data[:50]
                if i == 2 and ext == "cls":
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert run_cli("verify", str(damaged)) == 2
    report = capsys.readouterr()
    assert f"bad: train-000000.tar:{keys[1]}: cannot decode" in report.out
    assert f"bad: train-000000.tar:{keys[2]}: no label (no cls, no json with a label key)" in (
        report.out
    )
    assert "sha256 differs from manifest.json" in report.out
    assert "3 bad entries of 32 checked" in report.err


def test_interrupted_sharding_leaves_nothing_that_looks_valid(
    synthetic_tree, tmp_path, monkeypatch, capsys
):
    from maxvit.data import write_shards as module

    calls = {"n": 0}
    real = module._ShardFile.write

    def interrupted(self, key, item):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        real(self, key, item)

    monkeypatch.setattr(module._ShardFile, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_shards(synthetic_tree, tmp_path / "shards", shard_size=5, quiet=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    with pytest.raises(UserError, match="not empty; pass --force"):
        write_shards(synthetic_tree, tmp_path / "taken", quiet=True)
    assert (tmp_path / "taken" / "x").read_text() == "keep"
    assert (
        run_cli("shard", str(synthetic_tree), "--out", str(tmp_path / "s"), "--shard-size", "0")
        == 2
    )
    assert capsys.readouterr().err == "error: --shard-size must be >= 1, got 0\n"
    assert not (tmp_path / "s").exists()


def test_real_imagenet_jpegs_shard_and_decode(sample_tree, tmp_path):
    out = write_shards(sample_tree, tmp_path / "shards", shard_size=64, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 160 and manifest["splits"]["val"]["count"] == 40
    sample = next(iter(read_tar(out / "val-000000.tar").values()))
    image = decode_rgb(sample["jpg"])
    assert image.ndim == 3 and min(image.shape[:2]) > 64  # full size
    assert np.asarray(image).dtype == np.uint8


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (a full disk after the first shard); skipped where none can be mounted."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # even with a file left open


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no late flush
def test_a_full_or_read_only_disk_is_one_line_naming_the_output(
    synthetic_tree, small_tmpfs, capsys
):
    out = small_tmpfs / "shards"
    assert main(["data", "shard", str(synthetic_tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write the shards to {out}: No space left on device ")
    assert err.endswith(" MiB of shards; nothing was kept")
    assert "\n" not in err and ".tmp" not in err
    assert list(small_tmpfs.iterdir()) == []
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    assert main(["data", "shard", str(synthetic_tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err  # the output named, not its temporary folder
    assert (
        err == f"error: cannot write the shards to {out}: Read-only file system; nothing was kept\n"
    )


class Sentinel(Exception):
    """Raised by the test's own handler: the signal reached no handler of the code under test."""


def raise_sentinel(signum, frame):
    raise Sentinel(signum)


@pytest.mark.parametrize(
    ("signum", "name", "status"),
    [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "SIGINT (Ctrl-C)", 130)],
)
def test_a_signal_while_sharding_removes_the_unfinished_folder_in_one_line(
    signum, name, status, synthetic_tree, tmp_path, monkeypatch, capsys
):
    from maxvit.data import write_shards as module

    calls = {"n": 0}
    real = module._ShardFile.write

    def signalled(self, key, item):
        calls["n"] += 1
        if calls["n"] == 12:
            os.kill(os.getpid(), signum)
        real(self, key, item)

    monkeypatch.setattr(module._ShardFile, "write", signalled)
    previous = signal.signal(signum, raise_sentinel)  # what a signal meets outside the block
    try:
        out = tmp_path / "out" / "shards"
        assert main(["data", "shard", str(synthetic_tree), "--out", str(out)]) == status
        assert signal.getsignal(signum) is raise_sentinel  # restored after the block
    finally:
        signal.signal(signum, previous)
    err = capsys.readouterr().err
    assert err == f"interrupted: {name} while writing {out}; its unfinished shards were removed\n"
    assert list((tmp_path / "out").iterdir()) == []


def test_outputs_that_are_files_or_inside_the_source_and_bad_workers_are_one_line(
    synthetic_tree, tmp_path, capsys
):
    """Before: --force replaced a file by the shards and left `.NAME.old-PID` beside them, and
    would have deleted any folder (the source included); an --out inside the source failed
    naming its temporary folder; --workers -1 was a traceback."""
    file = tmp_path / "afile"
    file.write_text("keep")
    source = tmp_path / "tree"
    shutil.copytree(synthetic_tree, source)
    cases = {
        ("--out", str(file), "--force"): f"{file} exists and is not a folder; choose another --out",
        ("--out", str(source), "--force"): f"{source} holds no shards (no manifest.json); "
        "choose another --out",
        ("--out", str(source / "train" / "s")): f"--out {source / 'train' / 's'} is inside the "
        f"source {source}; choose a folder outside it",
        ("--out", str(file / "s")): f"cannot write the shards to {file / 's'}: {file} is a file, "
        "not a folder; nothing was kept",
        ("--out", str(tmp_path / "s"), "--workers", "-1"): "--workers must be >= 1, got -1",
    }
    for args, message in cases.items():
        assert run_cli("shard", str(source), *args) == 2
        assert capsys.readouterr().err == f"error: {message}\n"
    assert file.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "tree"]
    assert sorted(p.name for p in (source / "train").iterdir()) == sorted(
        p.name for p in (synthetic_tree / "train").iterdir()
    )
    assert run_cli("verify", str(source), "--workers", "-2") == 2
    assert capsys.readouterr().err == "error: --workers must be >= 1, got -2\n"
