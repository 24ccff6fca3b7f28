"""Layout detection: every accepted layout found from what the path holds, anything else refused."""

from __future__ import annotations

import shutil

import pytest

from maxvit.data import open_data
from maxvit.data.prepare import prepare
from maxvit.data.shards import beside, is_shard_pattern, shard_name, split_of
from maxvit.data.sources import FOLDERS, SHARDS, TINY
from maxvit.data.write_shards import write_shards
from maxvit.errors import UserError


@pytest.fixture(scope="module")
def shards(synthetic_tree, tmp_path_factory):
    return write_shards(
        synthetic_tree, tmp_path_factory.mktemp("s") / "shards", shard_size=7, quiet=True
    )


def test_tiny_imagenet_in_every_form(synthetic_archive, tmp_path):
    prepared = prepare(synthetic_archive, tmp_path / "prepared", quiet=True)
    for spec in (prepared, str(prepared)):
        source = open_data(spec)
        assert source.kind == TINY and source.num_classes == 200 and source.native_size == 64
        assert source.location == str(prepared)
    holder = tmp_path / "data"
    holder.mkdir()
    shutil.copy(synthetic_archive, holder / "tiny-imagenet-200.zip")
    source = open_data(holder)  # the folder `maxvit data download` fills, prepared on first use
    assert source.kind == TINY and source.class_names[0] == "thing 0, synthetic class 0"


def test_class_folders(synthetic_tree):
    source = open_data(synthetic_tree)
    assert source.kind == FOLDERS and source.native_size is None
    assert source.classes == ("class_00", "class_01", "class_02", "class_03")
    assert len(source.dataset("train")) == 24 and len(source.dataset("val")) == 8


def test_shard_folder_and_patterns(shards, synthetic_tree):
    folder = open_data(shards)
    assert folder.kind == SHARDS and folder.classes == open_data(synthetic_tree).classes
    assert [len(s.urls) for s in folder.shards.values()] == [4, 2]  # 24 = 7+7+7+3, 8 = 7+1
    assert folder.shard_split("train").counts == (7, 7, 7, 3)
    assert folder.shard_split("val").size == 8
    pattern = f"{shards}/{{train-{{000000..000003}},val-{{000000..000001}}}}.tar"
    assert is_shard_pattern(pattern)
    by_pattern = open_data(pattern)
    assert by_pattern.shards == folder.shards and by_pattern.location == pattern
    piped = open_data(f"pipe:cat {pattern}")
    assert piped.shard_split("train").counts == (7, 7, 7, 3)  # manifest read through the pipe
    assert piped.shard_split("val").urls[1] == f"pipe:cat {shards}/val-000001.tar"


def test_shard_names_and_neighbours():
    url = "pipe:aws s3 cp s3://bucket/in1k/train-000123.tar -"
    assert shard_name(url) == "train-000123.tar"
    assert beside(url, "classes.txt") == "pipe:aws s3 cp s3://bucket/in1k/classes.txt -"
    assert beside("https://h/x/val-000001.tar", "manifest.json") == "https://h/x/manifest.json"
    assert [
        split_of(n) for n in ("train-0.tar", "val-1.tar", "validation_2.tar", "trains.tar")
    ] == [
        "train",
        "val",
        "val",
        None,
    ]
    assert not is_shard_pattern("/data/imagenet") and not is_shard_pattern("runs/a{b}")


def test_unknown_layouts_are_one_line_errors_naming_the_layouts(tmp_path, synthetic_tree):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    for spec in (tmp_path / "empty", tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(
            UserError, match="accepted layouts: Tiny ImageNet.*class folders.*shards"
        ) as info:
            open_data(spec)
        assert "\n" not in str(info.value)
    no_val = tmp_path / "no_val"
    shutil.copytree(synthetic_tree / "train", no_val / "train")
    with pytest.raises(UserError, match="has train/ but no val/"):
        open_data(no_val)
    stray = tmp_path / "stray"
    shutil.copytree(synthetic_tree, stray)
    (stray / "val" / "zebra").mkdir()
    with pytest.raises(UserError, match="val/zebra has no train/ folder"):
        open_data(stray)


def test_shard_errors(shards, tmp_path):
    with pytest.raises(UserError, match="cannot tell the split of shard other-0.tar"):
        open_data(f"{shards}/{{other-0,train-000000}}.tar")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(shards / "train-000000.tar", lonely)
    with pytest.raises(UserError, match="cannot read classes.txt beside the shards"):
        open_data(lonely)
    bare = open_data(f"{shards}/train-{{000000..000001}}.tar")
    assert bare.shard_split("train").counts == (7, 7) and not bare.has_split("val")
    with pytest.raises(UserError, match="has no val shards"):
        bare.shard_split("val")


def test_download_is_never_implicit(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "maxvit.data.download.download", lambda url, root, **kw: calls.append(root) or root
    )
    with pytest.raises(UserError, match="does not exist"):
        open_data(tmp_path / "data")
    assert calls == []
    with pytest.raises(UserError):  # the stub "downloads" nothing usable
        open_data(tmp_path / "data", download=True)
    assert calls == [tmp_path / "data"]
