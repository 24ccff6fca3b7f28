"""Atomic writes (a file or a folder appears complete under its final name, or not at all),
failed writes as one line, folder locks, and file checksums.

The one implementation of tmp-then-rename in the project. A file is written to a hidden
temporary name in the same folder, flushed to disk (file and folder fsync), then renamed over
the target; a folder is filled under a temporary name and renamed when complete. Any error or
interrupt removes the temporary and leaves what was there before untouched.

A write that fails (a full disk, a read-only folder, a writer such as safetensors or
torch.save that reports the full disk in its own words) becomes one `WriteError` naming the
path the user knows, never a temporary, and on a full disk the space needed and free
(`writing`). Memory-mapped files cannot report a full disk (the kernel sends SIGBUS when a
page is first written, which Python cannot handle): their space is reserved when they are
created (`reserve`). `folder_lock` keeps two processes out of one output folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from maxvit.errors import UserError

FULL_BELOW = 1 << 20  # a writer's own error, with less free space than this, means a full disk


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


# --------------------------------------------------------------------------------------------
# Failed writes: one line


class WriteError(UserError, OSError):
    """A write that failed, in one line naming the path the user knows and, on a full disk,
    the space needed (where known) and free.

    A `UserError` (`maxvit` prints it and exits with status 2) and an `OSError` with the
    cause's ``errno`` and ``strerror`` (code that falls back on a failed write, a cache for
    one, still catches it). `reason` is the message without the path.
    """

    def __init__(self, path: Path, code: int | None, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.errno = code
        self.strerror = os.strerror(code) if code else reason
        self.filename = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


def format_size(nbytes: int) -> str:
    """1536 -> '1.5 KiB'."""
    size, unit = float(nbytes), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{nbytes} bytes" if unit == "bytes" else f"{size:.1f} {unit}"


def free_space(path: str | Path) -> int:
    """Bytes free for new files on the file system of `path` (or of its nearest existing
    parent, for a path still to be made)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def shown(path: str | Path) -> Path:
    """`path` as the user knows it: inside a staging folder (``.NAME.tmp-PID``, `staging_dir`)
    the final folder NAME instead, so that no message names a temporary."""
    parts = [re.sub(r"^\.(.+)\.tmp-\d+$", r"\1", part) for part in Path(path).parts]
    return Path(*parts)


def cannot_write(
    path: str | Path, code: int | None, reason: str, need: int | None = None
) -> WriteError:
    """The `WriteError` of a write of `path` that failed with `code` (an errno) and `reason`;
    `need` bytes, where known, are named on a full disk beside the space free; a file where a
    folder must be (on the way to `path`, or `path` itself when it is made as a folder) is named
    instead of the bare "File exists" or "Not a directory"."""
    if code in (errno.EEXIST, errno.ENOTDIR):
        path = Path(path)
        file = next((p for p in (*reversed(path.parents), path) if p.is_file()), None)
        if file is not None:
            reason = f"{shown(file)} is a file, not a folder"
    if code == errno.ENOSPC:
        reason = os.strerror(errno.ENOSPC)
        free = format_size(free_space(path))
        reason += f" ({format_size(need)} needed, {free} free)" if need else f" ({free} free)"
    return WriteError(shown(path), code, reason)


def disk_full(path: str | Path) -> bool:
    """Whether the file system of `path` is (nearly) full: how a writer's own error that names
    no cause (torch.save's "unexpected pos") is told to be a full disk."""
    return free_space(path) < FULL_BELOW


@contextlib.contextmanager
def writing(path: str | Path, need: int | None = None) -> Iterator[None]:
    """Within the block, a failed write of `path` raises one `WriteError` naming `path`; `need`:
    the bytes the block writes, where known. A failed write is an OSError, or a writer's own
    exception that carries an OS error (safetensors' "... (os error 28)"). Other exceptions
    and interrupts pass unchanged."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise cannot_write(path, exc.errno, exc.strerror or str(exc), need) from None
    except Exception as exc:
        found = re.search(r"\(os error (\d+)\)", str(exc))  # how Rust reports an I/O error
        if found is None:
            raise
        code = int(found.group(1))
        raise cannot_write(path, code, os.strerror(code), need) from None


def cache_root() -> Path:
    """Where maxvit caches what it derives from read-only data: ``$XDG_CACHE_HOME/maxvit``
    (``~/.cache/maxvit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "maxvit"


def writable(folder: str | Path) -> bool:
    """Whether new files can go into `folder`: writable for us and not marked read-only (root
    passes `os.access` on any folder, so a folder without any write permission bit, a read-only
    data share, also counts as read-only)."""
    folder = Path(folder)
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & 0o222)


def check_space(path: str | Path, need: int) -> None:
    """`WriteError` (a full disk) naming `path` unless `need` bytes are free where it goes:
    before long work whose output would not fit."""
    if free_space(path) < need:
        raise cannot_write(path, errno.ENOSPC, "", need)


def reserve(fd: int, size: int) -> None:
    """Allocate `size` bytes of the open file `fd` on disk, so that a memory-mapped write
    cannot meet a full disk (SIGBUS) later: a full disk is ENOSPC here. A file system without
    allocation (some network ones) is left to the free-space check (`check_space`)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


# --------------------------------------------------------------------------------------------
# Atomic files and folders


def atomic_write(path: str | Path, write: Callable[[Path], None], need: int | None = None) -> Path:
    """Create or replace `path` through ``write(tmp)``; returns `path`.

    `write` receives a temporary path in the same folder and must create the file there. The
    file is fsynced and renamed over `path`; on any exception (interrupts included) the
    temporary file is removed and the old `path`, if any, stays as it was. A failed write is
    a `WriteError` naming `path` (and on a full disk `need`, the file's size where known).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, need):
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it (some writers use 0600)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # before the message counts the space free
            raise
    _fsync_dir(path.parent)
    return path


def check_writable(path: str | Path) -> None:
    """Raise the `WriteError` (naming the folder) that writing `path` would meet, before any
    long work whose result would be lost: the folder must exist and take a new file."""
    folder = Path(path).parent
    probe = folder / f".{Path(path).name}.{os.getpid()}.probe"
    with writing(folder):
        try:
            probe.touch(exist_ok=False)
        except FileExistsError:
            pass
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
    folders of dead processes are cleaned up first. Making or renaming the folder fails with a
    `WriteError` naming `out`.
    """
    out = Path(out).absolute()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_staging_dirs(out):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
        with writing(out):
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # an empty placeholder folder is simply taken over
        if out.exists() and not replace:
            raise FileExistsError(f"{out} appeared while it was being written")
        old = None
        with writing(out):
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
            os.rename(tmp, out)
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# One process per output folder


def _holder(fd: int) -> str:
    """Who holds a lock file: 'PID n' as its holder wrote it, or 'another process'."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"PID {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold `folder` (a run or an output folder, made or still to be made) for this process
    for the block.

    The lock is an exclusive `fcntl.flock` on ``.NAME.lock`` beside the folder, which holds the
    holder's PID and is removed at the end. Another process holding it is a `UserError`
    ("FOLDER is in use by PID n"), or with `wait`, waited for (said in one line). The kernel
    drops the lock of a process that dies, so a lock file left by a killed process is simply
    taken over. Not re-entrant: a process locks a folder once. The parent folders made for the
    lock file are removed at the end when nothing else was put in them.
    """
    folder = Path(folder).absolute()
    path = folder.parent / f".{folder.name}.lock"
    made = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]
    with writing(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with writing(folder):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise UserError(
                        f"{folder} is in use by {_holder(fd)}; wait for it to finish or choose "
                        "another folder"
                    ) from None
                print(f"waiting for {_holder(fd)}, which is using {folder}", file=sys.stderr)
                fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break  # else its holder removed the file as we took it: lock the new one
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        with writing(folder):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: a waiter then sees another file
        os.close(fd)
        for parent in made:  # the folders made for the lock file alone, when left empty
            with contextlib.suppress(OSError):
                parent.rmdir()
