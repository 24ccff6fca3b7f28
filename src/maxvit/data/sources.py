"""Where the data is and which layout it has: the one reader of ``--data`` / ``--source``.

`open_data` looks at what the path holds and returns the `DataSource` of its layout, one
class per layout (:mod:`maxvit.data.source`):

* `TinySource`, Tiny ImageNet: the official zip, its unpacked folder, a prepared folder, or a
  folder that holds one of these under its official name (``data/`` after
  ``maxvit data download``); archives are prepared on first use.
* `FolderSource`, class folders: ``ROOT`` with ``ROOT/train/<class>/<image>`` and
  ``ROOT/val/<class>/<image>`` (torchvision's ImageFolder layout, as ImageNet-1K is usually
  unpacked).
* `ShardSource`, WebDataset shards: a folder of ``.tar`` shards whose names hold their split
  (``train-000000.tar``, ``in1k-val-000001.tar``); or a brace pattern, URL or ``pipe:``
  command naming the shards of both splits.
* `HFSource`, a Hugging Face dataset on local disk: parquet files in the Hub's layout
  (``data/train-*.parquet``, ``data/valid-*.parquet``) or a ``save_to_disk`` folder.

Anything else is a `UserError` naming these layouts. Downloading is never implicit: only
``open_data(..., download=True)`` fetches Tiny ImageNet, into the folder given.
"""

from __future__ import annotations

from pathlib import Path

from maxvit.data.folder_source import FolderSource
from maxvit.data.hf_source import HFSource
from maxvit.data.prepare import MANIFEST
from maxvit.data.shard_source import ShardSource
from maxvit.data.shards import is_shard_pattern, split_of
from maxvit.data.source import LAYOUTS, DataSource
from maxvit.data.tiny_source import TinySource
from maxvit.errors import UserError

OFFICIAL_NAME = "tiny-imagenet-200"
DOWNLOAD_HINT = "Tiny ImageNet comes with `maxvit data download` (or `maxvit train --download`)"


def open_data(spec: str | Path, *, download: bool = False) -> DataSource:
    """Locate and validate the data set `spec` names (see the module docstring).

    Tiny ImageNet archives are prepared on first use. With `download`, a folder (or a path that
    does not exist yet) holding no data set gets the official Tiny ImageNet archive first.
    """
    text = str(spec)
    if is_shard_pattern(text):
        return ShardSource.open(text)
    path = Path(text).expanduser()
    if path.is_dir() and _is_shard_folder(path):
        return ShardSource.open(path)
    if path.is_dir() and HFSource.holds(path):
        return HFSource.open(path)
    if path.is_dir() and (path / "train").is_dir() and not _is_tiny(path):
        return FolderSource.open(path)
    tiny = _tiny_in(path)
    if tiny is None and download:
        tiny = download_into(path)
    if tiny is None:
        what = "does not exist" if not path.exists() else "holds no data set of a known layout"
        raise UserError(f"{path} {what}; {LAYOUTS}; {DOWNLOAD_HINT}")
    return TinySource.open(tiny)


def _is_tiny(path: Path) -> bool:
    """A prepared folder or an unpacked official copy (not a folder that holds one)."""
    return (path / "wnids.txt").exists() or (path / MANIFEST).exists()


def _is_shard_folder(path: Path) -> bool:
    return any(split_of(p.name) for p in path.glob("*.tar"))


def _tiny_in(path: Path) -> Path | None:
    """The Tiny ImageNet archive or folder `path` is or holds, if any."""
    if path.is_file() and path.suffix == ".zip":
        return path
    if not path.is_dir():
        return None
    if _is_tiny(path):
        return path
    for name in (f"{OFFICIAL_NAME}-prepared", f"{OFFICIAL_NAME}.zip", OFFICIAL_NAME):
        if (path / name).exists():
            return path / name
    return None


def download_into(path: Path) -> Path:
    """Download the official Tiny ImageNet zip into folder `path` (kept if already there)."""
    from maxvit.data.download import OFFICIAL_URL, download

    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is not a folder to download Tiny ImageNet into; {LAYOUTS}")
    try:
        return download(OFFICIAL_URL, path)
    except UserError as exc:
        raise UserError(
            f"cannot download Tiny ImageNet ({exc}); pass a local copy with --data PATH "
            "(make train DATA=PATH)"
        ) from None
