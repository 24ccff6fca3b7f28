"""Hugging Face datasets from local files as a data source, read with pyarrow:

* a folder of parquet files in the Hub's layout (``data/train-00000-of-00004.parquet``,
  ``data/valid-*.parquet``, ``train/*.parquet``: the split is a word of the path below the
  folder, one level deep at most);
* a ``datasets`` ``save_to_disk`` folder of a ``DatasetDict`` (``dataset_dict.json``, and per
  split ``state.json`` naming its ``data-*.arrow`` files).

Splits: ``train``; ``val``, ``valid`` or ``validation`` (``test`` where there is none of
these). Columns: the image column holds ``{bytes, path}`` (the ``Image`` feature), the label
column integers (the ``ClassLabel`` feature, else a column named ``label``). Class names come
from the ``ClassLabel`` feature in the dataset's metadata when present, else they are the
labels found, ``0`` to the highest.

The data is streamed like shards (:mod:`maxvit.data.stream`), one unit per parquet row group
or Arrow record batch (``PATH#INDEX``), whose sizes the files' metadata gives without reading
any image. Opening one imports no torch.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from maxvit.data.shard_source import ShardSource
from maxvit.data.shards import ShardSplit, split_of
from maxvit.errors import UserError

PARQUET_GLOBS = ("*.parquet", "*/*.parquet")  # the Hub's layouts, one folder level at most
SAVED_DICT = "dataset_dict.json"  # what `DatasetDict.save_to_disk` writes first
_MAGIC = ((b"\xff\xd8", "jpg"), (b"\x89PNG", "png"))


@dataclass(frozen=True)
class HFSource(ShardSource):
    """A Hugging Face dataset on local disk; `location` is its folder, `shards` its units."""

    kind: ClassVar[str] = "hf-dataset"

    @classmethod
    def holds(cls, path: Path) -> bool:
        """Whether folder `path` holds parquet files or a saved DatasetDict."""
        return (path / SAVED_DICT).is_file() or any(
            next(path.glob(pattern), None) is not None for pattern in PARQUET_GLOBS
        )

    @classmethod
    def open(cls, path: str | Path) -> HFSource:
        import pyarrow as pa

        folder = Path(path).absolute()
        files = _saved_files(folder) if (folder / SAVED_DICT).is_file() else _parquet_files(folder)
        first = next(iter(files.values()))[0]
        try:
            schema = _schema(first)
            image, label, names = _columns(schema, first)
            units = {split: [u for f in fs for u in _units(f)] for split, fs in files.items()}
            if names is None:
                top = max(_top_label(f, label) for fs in files.values() for f in fs)
                names = tuple(str(i) for i in range(top + 1))
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"cannot read {first}: {exc}") from None
        if not names:
            raise UserError(f"{folder}: no row has a label in column {label!r}")
        read = functools.partial(_rows, image=image, label=label)
        shards = {}
        for split, us in units.items():
            rows = sum(n for _, n in us)
            stored = sum(f.stat().st_size for f in files[split]) // max(rows, 1)
            urls, counts = tuple(u for u, _ in us), tuple(n for _, n in us)
            shards[split] = ShardSplit(urls, counts, read, stored)
        metadata = "the Arrow files" if first.suffix == ".arrow" else "the parquet metadata"
        return cls(str(folder), names, names, shards, metadata)


def _split_name(relative: str) -> str | None:
    """train or val from the words of a path below the dataset folder; test as a third."""
    if (split := split_of(relative)) is not None:
        return split
    return "test" if "test" in re.findall(r"[a-z]+", relative.lower()) else None


def _assign(folder: Path, named: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """The train and val files (test standing in for a missing val); refuses a dataset
    without both."""
    if "val" not in named and "test" in named:
        named["val"] = named["test"]
    if "train" not in named or "val" not in named:
        have = ", ".join(sorted(named)) or "none"
        raise UserError(
            f"{folder} needs a train and a validation split (train-*, valid-*, validation-*, "
            f"val-* or test-*); it has: {have}"
        )
    return {split: named[split] for split in ("train", "val")}


def _parquet_files(folder: Path) -> dict[str, list[Path]]:
    named: dict[str, list[Path]] = {}
    for pattern in PARQUET_GLOBS:
        for file in sorted(folder.glob(pattern)):
            split = _split_name(file.relative_to(folder).as_posix())
            if split is not None:
                named.setdefault(split, []).append(file)
    return _assign(folder, named)


def _saved_files(folder: Path) -> dict[str, list[Path]]:
    """The Arrow files of each split of a ``DatasetDict.save_to_disk`` folder."""
    named: dict[str, list[Path]] = {}
    try:
        for name in json.loads((folder / SAVED_DICT).read_text())["splits"]:
            state = json.loads((folder / name / "state.json").read_text())
            files = [folder / name / f["filename"] for f in state["_data_files"]]
            if (split := _split_name(name)) is not None and files:
                named.setdefault(split, []).extend(files)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{folder} is not a readable save_to_disk folder ({type(exc).__name__}: {exc})"
        ) from None
    return _assign(folder, named)


def _schema(file: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.suffix == ".arrow":
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_stream(source).schema
    return pq.ParquetFile(file).schema_arrow


def _columns(schema: Any, file: Path) -> tuple[str, str, tuple[str, ...] | None]:
    """(image column, label column, class names from a ClassLabel feature or None)."""
    import pyarrow as pa

    features: dict[str, Any] = {}
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is not None:
        try:
            features = json.loads(raw)["info"]["features"] or {}
        except (ValueError, KeyError, TypeError):
            features = {}
    typed = {name: f.get("_type") for name, f in features.items() if isinstance(f, dict)}
    image = next((n for n, t in typed.items() if t == "Image"), None) or next(
        (
            f.name
            for f in schema
            if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0
        ),
        None,
    )
    label = next((n for n, t in typed.items() if t == "ClassLabel"), None)
    if (
        label is None
        and "label" in schema.names
        and pa.types.is_integer(schema.field("label").type)
    ):
        label = "label"
    if image is None or label is None:
        raise UserError(
            f"{file}: no image column ({{bytes, path}}) and integer label column found "
            f"(columns: {', '.join(schema.names)})"
        )
    names = features.get(label, {}).get("names")
    return image, label, tuple(str(n) for n in names) if names else None


def _units(file: Path) -> list[tuple[str, int]]:
    """(``FILE#INDEX``, rows) of each parquet row group or Arrow record batch of `file`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.suffix == ".arrow":
        with pa.memory_map(str(file)) as source:
            sizes = [batch.num_rows for batch in pa.ipc.open_stream(source)]
    else:
        meta = pq.ParquetFile(file).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return [(f"{file}#{i}", n) for i, n in enumerate(sizes) if n]


def _top_label(file: Path, label: str) -> int:
    """The highest label in `file` (-1 when it has none)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if file.suffix == ".arrow":
        with pa.memory_map(str(file)) as source:
            column = pa.ipc.open_stream(source).read_all()[label]
    else:
        column = pq.read_table(file, columns=[label])[label]
    top = pc.max(column).as_py()
    return -1 if top is None else int(top)


def _read_unit(unit: str, columns: list[str]) -> tuple[Any, str, int]:
    """(the table of rows, the file, the first row's index in the file) of one unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _, index = unit.rpartition("#")
    number = int(index)
    if path.endswith(".arrow"):
        with pa.memory_map(path) as source:
            first = 0
            for i, batch in enumerate(pa.ipc.open_stream(source)):
                if i == number:
                    return pa.Table.from_batches([batch]).select(columns), path, first
                first += batch.num_rows
        raise OSError(f"{path} has no record batch {number}")
    parquet = pq.ParquetFile(path)
    first = sum(parquet.metadata.row_group(i).num_rows for i in range(number))
    return parquet.read_row_group(number, columns=columns), path, first


def _rows(
    unit: str, errors: list[tuple[str, str]], *, image: str, label: str
) -> Iterator[dict[str, Any]]:
    """The rows of one unit as raw samples (as a shard's: image bytes under their type, the
    label under ``cls``); a unit that cannot be read adds to `errors`."""
    import pyarrow as pa

    try:
        table, path, first = _read_unit(unit, [image, label])
        rows = table.to_pylist()
    except (OSError, pa.ArrowException) as exc:
        errors.append((Path(unit).name, f"{type(exc).__name__}: {exc}"))
        return
    for row, record in enumerate(rows, start=first):
        sample: dict[str, Any] = {"__key__": f"{row:08d}", "__url__": path}
        if record[label] is not None:
            sample["cls"] = int(record[label])
        cell = record[image] or {}
        data, name = cell.get("bytes"), cell.get("path")
        if data is None and name and Path(name).is_file():
            data = Path(name).read_bytes()
        if data is not None:
            sample[_image_type(data, name)] = data
        yield sample


def _image_type(data: bytes, name: str | None) -> str:
    """jpg, png or webp from the bytes; else the suffix of the image's file name."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return Path(name).suffix.lstrip(".").lower() if name else "unknown"
