"""Shard counts and manifests: timm's _info.json, the cached counting pass, shards held to their
manifest, files beside URL shards that cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest

from maxvit.data import open_data
from maxvit.data.write_shards import write_shards
from maxvit.errors import UserError
from tests.data.foreign import shard_writer_folder
from tests.data.util import run_cli

TRAIN_COUNTS = (5, 5, 5, 5, 4)  # 24 train images in ShardWriter shards of 5
VAL_COUNTS = (5, 3)


@pytest.fixture(scope="module")
def shards(synthetic_tree, tmp_path_factory):
    return write_shards(
        synthetic_tree, tmp_path_factory.mktemp("s") / "shards", shard_size=7, quiet=True
    )


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_timm_info_gives_the_counts_of_shard_writer_shards(synthetic_tree, tmp_path, capsys):
    folder = shard_writer_folder(synthetic_tree, tmp_path / "sw", info=True, classes=True)
    source = open_data(folder)
    assert source.counted_by == "_info.json" and source.classes == open_data(synthetic_tree).classes
    assert source.shard_split("train").counts == TRAIN_COUNTS
    assert source.shard_split("val").counts == VAL_COUNTS
    assert source.shard_split("val").urls[0] == str(folder / "in1k-validation-000000.tar")
    assert "counting" not in capsys.readouterr().err  # no pass over the shards
    info = json.loads((folder / "_info.json").read_text())
    info["splits"]["train"]["shard_lengths"][0] = 4
    (folder / "_info.json").write_text(json.dumps(info))
    verified = open_data(folder).verify(workers=1)
    assert verified.bad == [
        (str(folder / "in1k-train-000000.tar"), "holds 5 samples; _info.json says 4")
    ]
    (folder / "_info.json").write_text('{"splits": {"train": {"filenames": []}}}')
    with pytest.raises(UserError, match=r"_info.json is not timm's _info.json format \(KeyError"):
        open_data(folder)


def test_unlabelled_classes_are_counted_once_and_cached(
    synthetic_tree, tmp_path, capsys, monkeypatch
):
    folder = shard_writer_folder(synthetic_tree, tmp_path / "sw", label="json")
    source = open_data(folder)  # no classes.txt, no counts: one pass finds both
    assert capsys.readouterr().err.startswith("counting the samples of 7 shard(s) in one pass")
    assert source.classes == source.class_names == ("0", "1", "2", "3")
    assert source.counted_by == "the counting pass"
    assert source.shard_split("train").counts == TRAIN_COUNTS
    assert sorted(i.label for i in source.items("val")) == [0, 0, 1, 1, 2, 2, 3, 3]
    cache = json.loads((folder / "maxvit-counts.json").read_text())
    assert cache["format"] == "maxvit-shard-counts/1"
    assert cache["shards"]["in1k-validation-000001.tar"]["count"] == 3
    assert open_data(folder).shard_split("val").counts == VAL_COUNTS
    assert capsys.readouterr().err == ""  # from the cache
    ours = open_data(write_shards(folder, tmp_path / "ours", quiet=True))  # re-sharded
    assert (ours.classes, ours.count("train"), ours.count("val")) == (source.classes, 24, 8)
    changed = folder / "in1k-train-000004.tar"
    os.utime(changed, ns=(0, 0))
    assert open_data(folder).shard_split("train").counts == TRAIN_COUNTS
    assert "counting the samples of 1 shard(s)" in capsys.readouterr().err  # that one only
    shared = copy(folder, tmp_path / "shared")
    (shared / "maxvit-counts.json").unlink()
    shared.chmod(0o555)  # a read-only share: the cache goes to the user's cache folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        assert open_data(shared).shard_split("train").counts == TRAIN_COUNTS
    finally:
        shared.chmod(0o755)
    assert not (shared / "maxvit-counts.json").exists()
    [cached] = (tmp_path / "cache" / "maxvit").glob("shard-counts-*.json")
    assert json.loads(cached.read_text())["shards"]["in1k-train-000000.tar"]["count"] == 5


def test_shards_are_held_to_their_manifest(shards, tmp_path):
    missing = copy(shards, tmp_path / "missing")
    (missing / "train-000002.tar").unlink()
    with pytest.raises(UserError, match=r"missing/train-000002.tar is missing \(1 of the 6 shards"):
        open_data(missing)
    extra = copy(shards, tmp_path / "extra")
    shutil.copy(extra / "train-000000.tar", extra / "train-000009.tar")
    with pytest.raises(UserError, match="train-000009.tar is not listed in manifest.json"):
        open_data(extra)
    reordered = copy(shards, tmp_path / "reordered")
    classes = (reordered / "classes.txt").read_text().splitlines()
    (reordered / "classes.txt").write_text("\n".join(reversed(classes)) + "\n")
    with pytest.raises(UserError, match="reordered/classes.txt is not the classes.txt these"):
        open_data(reordered)
    gone = copy(shards, tmp_path / "gone")
    (gone / "classes.txt").unlink()
    with pytest.raises(UserError, match="gone/classes.txt is missing"):
        open_data(gone)
    binary = copy(shards, tmp_path / "binary")
    (binary / "classes.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="binary/classes.txt is not UTF-8 text"):
        open_data(binary)
    for name, text, problem in (
        ("garbage", "\x00\x13 not json", "is not valid JSON"),
        ("damaged", '{"format": "maxvit-shards/1", "splits": {"train": {}}}', "is damaged"),
        ("future", '{"format": "maxvit-shards/9"}', "has format 'maxvit-shards/9'"),
    ):
        bad = copy(shards, tmp_path / name)
        (bad / "manifest.json").write_text(text)
        with pytest.raises(UserError, match=f"{name}/manifest.json {problem}") as info:
            open_data(bad)
        assert "\n" not in str(info.value)
    foreign = copy(shards, tmp_path / "foreign")  # another tool's manifest.json: not ours
    (foreign / "manifest.json").write_text('{"files": ["train-000000.tar"]}')
    source = open_data(foreign)
    assert (source.counted_by, source.shard_split("val").counts) == ("the counting pass", (7, 1))


def test_a_changed_shard_stops_training_and_evaluation_and_verify_names_it(shards, tmp_path):
    from maxvit.data import AugmentConfig, build_eval_loader, build_train_loader

    changed = copy(shards, tmp_path / "changed")
    with open(changed / "val-000001.tar", "ab") as f:
        f.write(b"\0" * 512)
    source = open_data(changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    size = manifest["splits"]["val"]["shards"][1]["bytes"]
    match = f"val-000001.tar has {size + 512} bytes; manifest.json says {size} "
    with pytest.raises(UserError, match=match):
        build_eval_loader(source, "val", batch_size=4, num_workers=0, img_size=32)
    shutil.copy(changed / "val-000001.tar", changed / "train-000003.tar")
    with pytest.raises(UserError, match="train-000003.tar has"):
        build_train_loader(
            source, AugmentConfig(), batch_size=4, img_size=32, seed=0, num_workers=0
        )
    verified = open_data(changed).verify(workers=1)
    assert (
        str(changed / "val-000001.tar"),
        "its sha256 differs from manifest.json",
    ) in verified.bad


def test_a_missing_val_split_is_found(shards, tmp_path, capsys):
    train_only = copy(shards, tmp_path / "train_only")
    for path in train_only.glob("val-*.tar"):
        path.unlink()
    assert run_cli("verify", str(train_only)) == 2
    assert "train_only has train shards but no val shards" in capsys.readouterr().err
    pattern = f"{shards}/train-{{000000..000003}}.tar"  # a pattern may name one split
    assert run_cli("verify", pattern) == 2
    assert f"bad: {pattern}: no val split" in capsys.readouterr().out


def test_unreachable_shard_urls_are_one_quick_line(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        open_data(f"http://127.0.0.1:{closed}/{{train-000000,val-000000}}.tar")
    assert time.monotonic() - started < 5
    assert str(info.value).startswith(f"cannot reach http://127.0.0.1:{closed}/classes.txt: ")
    assert "curl" not in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setattr("maxvit.data.shards.URL_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(
            UserError, match=f"cannot reach http://127.0.0.1:{port}/classes.txt: timed out"
        ):
            open_data(f"http://127.0.0.1:{port}/{{train-000000,val-000000}}.tar")


def test_shards_that_cannot_be_counted_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("train-0.tar", "val-0.tar"):
        (junk / name).write_bytes(b"not a tar file")
    with pytest.raises(
        UserError, match="^cannot count the samples of shard train-0.tar: ReadError"
    ):
        open_data(junk)
    with pytest.raises(UserError) as info:
        open_data("pipe:false {train,val}-0.tar")
    # whichever webdataset sees first: the command's exit, or its empty output
    assert str(info.value) in (
        "cannot count the samples of shard train-0.tar: its download or pipe: command exited "
        "with status 1",
        "cannot count the samples of shard train-0.tar: ReadError: empty file",
    )
    assert not (junk / "maxvit-counts.json").exists() and not (tmp_path / "cache").exists()


def test_a_pattern_naming_shards_that_are_not_there_is_one_line(shards, tmp_path, monkeypatch):
    """Before: a note that the shards would be counted, then `FileNotFoundError: 2`."""
    from maxvit.data.shards import _one_line

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pattern = f"{tmp_path}/{{train,val}}-000000.tar"
    with pytest.raises(UserError) as info:
        open_data(pattern)
    assert str(info.value) == f"{tmp_path}/train-000000.tar (a shard of {pattern}) is not a file"
    assert not (tmp_path / "cache").exists()
    assert _one_line(FileNotFoundError(2, "No such file or directory")) == (
        "No such file or directory"
    )
    open_data(f"{shards}/{{train-000000,val-000000}}.tar")  # shards that are there
