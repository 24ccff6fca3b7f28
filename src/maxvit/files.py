"""Atomic writes (a file or a folder appears complete under its final name, or not at all), and
file checksums.

The one implementation of tmp-then-rename in the project. A file is written to a hidden
temporary name in the same folder, flushed to disk (file and folder fsync), then renamed over
the target; a folder is filled under a temporary name and renamed when complete. Any error or
interrupt removes the temporary and leaves what was there before untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create or replace `path` through ``write(tmp)``; returns `path`.

    `write` receives a temporary path in the same folder and must create the file there. The
    file is fsynced and renamed over `path`; on any exception (interrupts included) the
    temporary file is removed and the old `path`, if any, stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it (some writers use 0600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def check_writable(path: str | Path) -> None:
    """Raise the OSError (naming the folder) that writing `path` would meet, before any long
    work whose result would be lost: the folder must exist and take a new file."""
    folder = Path(path).parent
    probe = folder / f".{Path(path).name}.{os.getpid()}.probe"
    try:
        probe.touch(exist_ok=False)
    except FileExistsError:
        pass
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(folder)) from None
    probe.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any, indent: int = 1) -> Path:
    """Atomically write `data` as indented JSON to `path`."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def _dead(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` when its process was killed
    (``.<name>.<pid>.tmp`` of a process that no longer exists); returns them."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        pid = path.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if path.is_file() and _dead(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def stale_staging_dirs(out: Path) -> Iterator[Path]:
    """Staging folders of `out` (see `staging_dir`) left by processes that no longer exist."""
    for path in out.parent.glob(f".{out.name}.tmp-*"):
        if _dead(path.name.rsplit("-", 1)[-1]):
            yield path


@contextlib.contextmanager
def staging_dir(out: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Fill a folder under a temporary name; it becomes `out` when the block ends normally.

    Yields the temporary folder (``.<name>.tmp-<pid>`` beside `out`). On success it is renamed
    to `out`; with `replace`, an existing `out` is swapped out first and removed afterwards.
    On any exception the temporary folder is deleted and `out` is left as it was. Staging
    folders of dead processes are cleaned up first.
    """
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_staging_dirs(out):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty placeholder folder is simply taken over
        if out.exists():
            if not replace:
                raise FileExistsError(f"{out} appeared while it was being written")
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
