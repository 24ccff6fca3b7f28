"""Hugging Face datasets on local disk: parquet files in the Hub's layout and save_to_disk
folders, found from what the path holds, read, verified and sharded."""

from __future__ import annotations

import pytest

from maxvit.data import open_data
from maxvit.data.hf_source import HFSource
from maxvit.errors import UserError
from tests.data.foreign import parquet_folder, saved_dataset_dict
from tests.data.test_shards import read_tar
from tests.data.util import run_cli

CLASSES = ("class_00", "class_01", "class_02", "class_03")


def labelled_bytes(source, split: str) -> list[tuple[bytes, int]]:
    return sorted((item.bytes(), item.label) for item in source.items(split))


def test_parquet_in_the_hubs_layout_reads_verifies_and_shards(synthetic_tree, tmp_path, capsys):
    folder = parquet_folder(synthetic_tree, tmp_path / "hub")
    source = open_data(folder)
    assert isinstance(source, HFSource) and source.kind == "hf-dataset"
    assert source.classes == source.class_names == CLASSES  # the ClassLabel feature's names
    train = source.shard_split("train")
    assert train.counts == (5, 5, 5, 5, 4)  # row groups of 5, from the metadata
    assert train.urls[1] == f"{folder}/data/train-00000-of-00001.parquet#1"
    assert source.count("val") == 8 and not source.has_split("test")
    first = next(source.items("train"))
    assert (first.name, first.ext, first.label) == (
        "train-00000-of-00001.parquet:00000000",
        "jpg",
        0,
    )
    tree = open_data(synthetic_tree)
    for split in ("train", "val"):
        assert labelled_bytes(source, split) == labelled_bytes(tree, split)
    verified = source.verify(workers=1)
    assert (verified.summary, verified.bad) == ("hf-dataset, 4 classes, 32 images decode", [])
    assert run_cli("shard", str(folder), "--out", str(tmp_path / "shards")) == 0
    capsys.readouterr()
    shards = open_data(tmp_path / "shards")
    assert shards.classes == CLASSES and shards.shard_split("val").counts == (8,)
    assert labelled_bytes(shards, "train") == labelled_bytes(tree, "train")


def test_parquet_without_class_names_and_with_a_test_split(synthetic_tree, tmp_path):
    folder = parquet_folder(synthetic_tree, tmp_path / "hub", names=False, val_word="test")
    source = open_data(folder)
    assert source.classes == ("0", "1", "2", "3")  # the labels found
    assert source.shard_split("val").counts == (5, 3)  # test stands in for a missing val
    assert sorted(item.label for item in source.items("val")) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_save_to_disk_folder(synthetic_tree, tmp_path):
    source = open_data(saved_dataset_dict(synthetic_tree, tmp_path / "saved"))
    assert isinstance(source, HFSource) and source.classes == CLASSES
    assert source.shard_split("train").counts == (5, 5, 5, 5, 4)  # record batches of 5
    assert source.counted_by == "the Arrow files"
    assert labelled_bytes(source, "val") == labelled_bytes(open_data(synthetic_tree), "val")


def test_hf_folders_that_cannot_train_are_one_line_errors(synthetic_tree, tmp_path):
    folder = parquet_folder(synthetic_tree, tmp_path / "no_val")
    (folder / "data" / "valid-00000-of-00001.parquet").unlink()
    with pytest.raises(UserError, match="no_val needs a train and a validation split.*has: train"):
        open_data(folder)
    import pyarrow as pa
    import pyarrow.parquet as pq

    other = tmp_path / "other" / "data"
    other.mkdir(parents=True)
    for split in ("train", "valid"):
        pq.write_table(pa.table({"text": ["a"], "score": [1.5]}), other / f"{split}-0.parquet")
    with pytest.raises(UserError, match=r"no image column .* \(columns: text, score\)"):
        open_data(other.parent)
    broken = parquet_folder(synthetic_tree, tmp_path / "broken")
    (broken / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(UserError, match="cannot read .*train-00000-of-00001.parquet"):
        open_data(broken)


def test_real_imagenet_jpegs_in_parquet(sample_tree, tmp_path):
    folder = parquet_folder(sample_tree, tmp_path / "hub", row_group=16)
    source = open_data(folder)
    assert source.shard_split("train").counts == (16,) * 10
    assert source.count("val") == 40 and source.num_classes == 10
    out = tmp_path / "shards"
    assert run_cli("shard", str(folder), "--out", str(out), "--shard-size", "64") == 0
    originals = {path.read_bytes() for path in (sample_tree / "val").rglob("*.JPEG")}
    assert {s["jpg"] for s in read_tar(out / "val-000000.tar").values()} == originals


def test_a_class_name_that_cannot_be_a_line_of_classes_txt_is_refused(
    synthetic_tree, tmp_path, capsys
):
    import json

    import pyarrow.parquet as pq

    folder = parquet_folder(synthetic_tree, tmp_path / "hub")
    for file in (folder / "data").iterdir():
        table = pq.read_table(file)
        meta = json.loads(table.schema.metadata[b"huggingface"])
        meta["info"]["features"]["label"]["names"][1] = "two\nlines"
        pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), file)
    assert open_data(folder).classes[1] == "two\nlines"
    assert run_cli("shard", str(folder), "--out", str(tmp_path / "shards")) == 2
    assert "error: class 'two\\nlines' of" in capsys.readouterr().err
    assert not (tmp_path / "shards").exists()
