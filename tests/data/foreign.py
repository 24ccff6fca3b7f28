"""Data sets as other tools write them, made from a class-folder tree for the tests:
`webdataset.ShardWriter` shards (with timm's ``_info.json`` or ``.json`` labels), and Hugging
Face datasets (parquet files in the Hub's layout, a ``save_to_disk`` folder) written with
pyarrow in the formats the ``datasets`` library uses."""

from __future__ import annotations

import json
from pathlib import Path

from maxvit.data import open_data

SPLITS = {"train": "train", "val": "validation"}


def _rows(tree: Path, split: str) -> list[dict]:
    """image bytes, file name and label of every image of `split`, in the tree's order."""
    return [
        {"image": {"bytes": item.bytes(), "path": Path(item.name).name}, "label": item.label}
        for item in open_data(tree).items(split)
    ]


def shard_writer_folder(
    tree: Path, out: Path, *, label: str = "cls", info: bool = False, classes: bool = False
) -> Path:
    """Shards of 5 samples, ``in1k-train-000000.tar`` / ``in1k-validation-000000.tar``, written
    by `webdataset.ShardWriter`: the image under its type, the label under `label` (``cls``,
    or ``json`` as ``{"label": N}``); with `info`, timm's ``_info.json``; with `classes`, a
    ``classes.txt``. No manifest."""
    import webdataset

    out.mkdir(parents=True)
    splits = {}
    for split, word in SPLITS.items():
        pattern = str(out / f"in1k-{word}-%06d.tar")
        items = list(open_data(tree).items(split))
        with webdataset.ShardWriter(pattern, maxcount=5, verbose=0) as sink:
            for i, item in enumerate(items):
                value = item.label if label == "cls" else {"label": item.label}
                sink.write({"__key__": f"{i:06d}", item.ext: item.bytes(), label: value})
        names = sorted(p.name for p in out.glob(f"in1k-{word}-*.tar"))
        total = len(items)
        lengths = [5] * (total // 5) + ([total % 5] if total % 5 else [])
        splits[word] = {
            "name": word,
            "num_samples": total,
            "filenames": names,
            "shard_lengths": lengths,
        }
    if info:
        (out / "_info.json").write_text(json.dumps({"name": "synthetic", "splits": splits}))
    if classes:
        (out / "classes.txt").write_text("".join(f"{c}\n" for c in open_data(tree).classes))
    return out


def hf_metadata(names: list[str] | None) -> dict[bytes, bytes]:
    """The schema metadata `datasets` writes: its features, an Image and a ClassLabel (or an
    integer Value without names)."""
    label = (
        {"names": names, "_type": "ClassLabel"} if names else {"dtype": "int64", "_type": "Value"}
    )
    features = {"image": {"_type": "Image"}, "label": label}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def _table(tree: Path, split: str, names: list[str] | None):
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image), ("label", pa.int64())], metadata=hf_metadata(names))
    return pa.Table.from_pylist(_rows(tree, split), schema=schema)


def parquet_folder(
    tree: Path, out: Path, *, names: bool = True, val_word: str = "valid", row_group: int = 5
) -> Path:
    """The Hub's layout: ``out/data/train-00000-of-00001.parquet`` and
    ``out/data/<val_word>-00000-of-00001.parquet``, row groups of `row_group` rows, with the
    class names in the features metadata when `names`."""
    import pyarrow.parquet as pq

    classes = list(open_data(tree).classes) if names else None
    (out / "data").mkdir(parents=True)
    for split, word in (("train", "train"), ("val", val_word)):
        table = _table(tree, split, classes)
        pq.write_table(
            table, out / "data" / f"{word}-00000-of-00001.parquet", row_group_size=row_group
        )
    return out


def saved_dataset_dict(tree: Path, out: Path) -> Path:
    """A ``DatasetDict.save_to_disk`` folder: ``dataset_dict.json``, and per split
    ``data-00000-of-00001.arrow`` (an Arrow stream of record batches of 5 rows),
    ``state.json`` and ``dataset_info.json``."""
    import pyarrow as pa

    classes = list(open_data(tree).classes)
    out.mkdir(parents=True)
    (out / "dataset_dict.json").write_text(json.dumps({"splits": list(SPLITS.values())}))
    for split, word in SPLITS.items():
        folder = out / word
        folder.mkdir()
        table = _table(tree, split, classes)
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=5)
        state = {
            "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
            "_fingerprint": "0123456789abcdef",
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": word,
        }
        (folder / "state.json").write_text(json.dumps(state))
        features = json.loads(hf_metadata(classes)[b"huggingface"])["info"]["features"]
        (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    return out
