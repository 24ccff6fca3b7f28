"""Data sources: every accepted layout found from what the path holds, anything else refused, and
the same questions answered by each layout's class."""

from __future__ import annotations

import shutil

import pytest

from maxvit.data import open_data
from maxvit.data.folder_source import FolderSource
from maxvit.data.prepare import prepare
from maxvit.data.shard_source import ShardSource
from maxvit.data.shards import (
    SampleError,
    beside,
    decode_sample,
    is_shard_pattern,
    label_of,
    shard_name,
    split_of,
)
from maxvit.data.source import DataSource
from maxvit.data.tiny_source import TinySource
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
        assert isinstance(source, TinySource) and source.num_classes == 200
        assert source.native_size == 64 and source.archive is None
        assert source.location == str(prepared)
    holder = tmp_path / "data"
    holder.mkdir()
    shutil.copy(synthetic_archive, holder / "tiny-imagenet-200.zip")
    source = open_data(holder)  # the folder `maxvit data download` fills, prepared on first use
    assert isinstance(source, TinySource) and source.class_names[0] == "thing 0, synthetic class 0"
    assert source.archive == holder / "tiny-imagenet-200.zip"


def test_class_folders(synthetic_tree):
    source = open_data(synthetic_tree)
    assert isinstance(source, FolderSource) and source.native_size is None
    assert source.classes == ("class_00", "class_01", "class_02", "class_03")
    assert len(source.dataset("train")) == 24 and len(source.dataset("val")) == 8


def test_every_layout_answers_the_same_questions(
    synthetic_archive, synthetic_tree, shards, tmp_path
):
    """Counts, splits, items and verify, asked of each layout through the one interface."""
    tiny, folders, sharded = (
        open_data(synthetic_archive),
        open_data(synthetic_tree),
        open_data(shards),
    )
    assert [tiny.count(s) for s in ("train", "val", "test")] == [400, 200, 4]
    assert [folders.count(s) for s in ("train", "val", "test")] == [24, 8, 0]
    assert [sharded.count(s) for s in ("train", "val", "test")] == [24, 8, 0]
    assert tiny.has_split("test") and not folders.has_split("test")
    assert not sharded.has_split("test")
    assert folders.describe() == f"{synthetic_tree.absolute()} (class-folders, 4 classes)"
    first = next(tiny.items("train"))  # the archive's own JPEG
    assert (first.name, first.ext, first.label) == (
        "train/n10000000/images/n10000000_0.JPEG",
        "jpg",
        0,
    )
    png = next(open_data(tiny.location).items("val"))  # a prepared folder: its arrays as PNG
    assert (png.name, png.ext, png.label) == ("val/images/val_0.JPEG", "png", 0)
    assert png.bytes().startswith(b"\x89PNG")
    item = next(folders.items("val"))
    assert (item.name, item.ext, item.label) == (
        str(synthetic_tree / "val/class_00/img_000.JPEG"),
        "jpg",
        0,
    )
    assert sorted(i.label for i in sharded.items("val")) == [0, 0, 1, 1, 2, 2, 3, 3]
    verified = tiny.verify(workers=1)
    assert verified.summary == "200 classes; train 400, val 200, test 4; checksums match"
    assert (verified.checked, verified.bad) == (604, [])
    verified = folders.verify(workers=1)
    assert (verified.summary, verified.checked, verified.bad) == (
        "class-folders, 4 classes, 32 images decode",
        32,
        [],
    )
    bare = tmp_path / "bare"  # shards without their manifest: counted in one pass
    shutil.copytree(shards, bare)
    (bare / "manifest.json").unlink()
    assert open_data(bare).count("train") == 24
    with pytest.raises(TypeError, match="abstract"):
        DataSource("x", ("a",), ("a",))


def test_shard_folder_and_patterns(shards, synthetic_tree):
    folder = open_data(shards)
    assert isinstance(folder, ShardSource) and folder.classes == open_data(synthetic_tree).classes
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
    names = (
        "train-0.tar",
        "val-1.tar",
        "validation_2.tar",
        "trains.tar",
        "in1k-train-000000.tar",
        "imagenet1k-validation-00.tar",
        "tiny_valid.000001.tar",
        "train2017-0001.tar",
        "train-val-0.tar",
        "retrain-0.tar",
    )
    assert [split_of(n) for n in names] == [
        "train",
        "val",
        "val",
        None,
        "train",
        "val",
        "val",
        "train",
        None,
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
    odd = tmp_path / "odd"  # shards that exist, one named with no split in it
    odd.mkdir()
    shutil.copy(shards / "train-000000.tar", odd / "other-0.tar")
    shutil.copy(shards / "train-000000.tar", odd)
    with pytest.raises(UserError, match="cannot tell the split of shard other-0.tar"):
        open_data(f"{odd}/{{other-0,train-000000}}.tar")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(shards / "train-000000.tar", lonely)
    with pytest.raises(UserError, match="lonely has train shards but no val shards"):
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


def test_labels_come_from_cls_or_a_json_label():
    assert label_of({"cls": b" 7\n"}) == 7 and label_of({"cls": 3}) == 3
    assert label_of({"json": b'{"label": 5, "name": "x"}'}) == 5
    assert label_of({"cls": b"2", "json": b'{"label": 9}'}) == 2  # cls first, as timm reads it
    for sample, problem in (
        ({}, "no label (no cls, no json with a label key)"),
        ({"json": b'{"class": 1}'}, "no label (its json has no label key)"),
        ({"json": b"not json"}, "no label (its json has no label key)"),
        ({"json": b'{"label": "cat"}'}, "json label is not an integer ('cat')"),
        ({"cls": b"x1"}, "cls is not an integer (b'x1')"),
    ):
        with pytest.raises(SampleError) as info:
            label_of(sample)
        assert str(info.value) == problem
    with pytest.raises(SampleError, match="label 4 is outside 0..3"):
        decode_sample({"jpg": b"", "json": b'{"label": 4}'}, 4)
