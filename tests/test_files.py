"""Atomic writes: the one helper, file and folder, complete or absent; a failed write in one
line; one process per folder."""

from __future__ import annotations

import errno
import os
import time

import pytest

from maxvit.errors import UserError
from maxvit.files import (
    WriteError,
    atomic_write,
    check_writable,
    folder_lock,
    reserve,
    sha256_file,
    staging_dir,
    write_json,
    write_text,
    writing,
)
from tests.faults import holding, tmpfs


def test_atomic_write_replaces_only_when_complete(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "first")

    def fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt  # an interrupt mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left
    write_json(path, {"a": 1})
    assert path.read_text() == '{\n "a": 1\n}\n'


def test_staging_dir_appears_complete_or_not_at_all(tmp_path):
    out = tmp_path / "shards"
    with pytest.raises(RuntimeError):
        with staging_dir(out) as tmp:
            (tmp / "part").write_text("x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with staging_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".shards.tmp-")
        (tmp / "done").write_text("x")
    assert [p.name for p in out.iterdir()] == ["done"]
    with pytest.raises(FileExistsError):  # never replaced without asking
        with staging_dir(out) as tmp:
            (tmp / "new").write_text("y")
    assert [p.name for p in out.iterdir()] == ["done"]
    with staging_dir(out, replace=True) as tmp:
        (tmp / "new").write_text("y")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_staging_dirs_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".out.tmp-999999999"  # no such process
    dead.mkdir()
    alive = tmp_path / f".out.tmp-{os.getppid()}"
    alive.mkdir()
    with staging_dir(tmp_path / "out"):
        pass
    assert not dead.exists() and alive.exists()


def test_sha256_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_check_writable_names_the_folder_and_leaves_nothing(tmp_path):
    check_writable(tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriteError) as info:
        check_writable(tmp_path / "missing" / "model.onnx")
    assert str(info.value) == f"cannot write {tmp_path / 'missing'}: No such file or directory"
    assert info.value.errno == errno.ENOENT
    with pytest.raises(WriteError) as info:
        check_writable("/proc/model.onnx")  # writable for nobody, root included
    assert info.value.filename == "/proc"


def test_a_file_where_a_folder_must_be_is_named(tmp_path):
    """Before: `cannot write PATH: File exists` (mkdir's words) for a file on the way."""
    file = tmp_path / "afile"
    file.write_text("keep")
    for out in (file / "run", file / "a" / "b"):
        with pytest.raises(WriteError) as info, folder_lock(out):
            pass
        assert str(info.value) == f"cannot write {out}: {file} is a file, not a folder"
    with pytest.raises(WriteError) as info, writing(file):
        file.mkdir(exist_ok=True)  # a folder asked for where a file is
    assert str(info.value) == f"cannot write {file}: {file} is a file, not a folder"
    assert file.read_text() == "keep" and [p.name for p in tmp_path.iterdir()] == ["afile"]


# -------------------------------------------------------------------------------------------
# A failed write: one line naming the path the user knows


def test_a_full_disk_names_the_file_and_the_space_and_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        path = disk / "weights.bin"
        write_text(path, "old")
        with pytest.raises(WriteError) as info:
            atomic_write(path, lambda tmp: tmp.write_bytes(b"\0" * (3 << 20)), need=3 << 20)
        assert str(info.value) == (
            f"cannot write {path}: No space left on device (3.0 MiB needed, 2.0 MiB free)"
        )
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
        assert path.read_text() == "old"
        assert [p.name for p in disk.iterdir()] == ["weights.bin"]  # no temporary left


def test_memory_mapped_space_is_reserved_so_a_full_disk_is_an_error_not_sigbus(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fd = os.open(disk / "array", os.O_RDWR | os.O_CREAT)
        try:
            reserve(fd, 512 << 10)
            assert os.fstat(fd).st_blocks * 512 >= 512 << 10  # allocated, not sparse
            with pytest.raises(OSError) as info:
                reserve(fd, 2 << 20)
            assert info.value.errno == errno.ENOSPC
        finally:
            os.close(fd)


def test_a_writers_own_io_error_is_one_line_and_other_errors_pass(tmp_path):
    def rust_writer(tmp):  # how safetensors reports an I/O error
        raise RuntimeError(
            "Error while serializing: I/O error: Read-only file system (os error 30)"
        )

    with pytest.raises(WriteError) as info:
        atomic_write(tmp_path / "x.safetensors", rust_writer)
    assert str(info.value) == f"cannot write {tmp_path / 'x.safetensors'}: Read-only file system"
    assert info.value.errno == errno.EROFS
    with pytest.raises(RuntimeError, match="^a bug$"):
        with writing(tmp_path / "x"):
            raise RuntimeError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_messages_name_the_output_folder_never_its_staging_folder(tmp_path):
    out = tmp_path / "prepared"
    with pytest.raises(WriteError) as info:
        with staging_dir(out) as tmp, writing(tmp / "train_images.npy", 5 << 20):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(info.value) == f"cannot write {out / 'train_images.npy'}: Disk quota exceeded"
    with pytest.raises(WriteError) as info:
        with staging_dir("/proc/prepared"):
            pass
    assert str(info.value).startswith("cannot write /proc/prepared: ")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------------
# One process per folder


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    with holding(folder, 60) as pid:
        with pytest.raises(UserError) as info:
            with folder_lock(folder):
                pass
        assert str(info.value) == (
            f"{folder} is in use by PID {pid}; wait for it to finish or choose another folder"
        )
    lock = tmp_path / ".run.lock"
    assert lock.read_text() == f"{pid}\n"  # left by the killed process
    with folder_lock(folder):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_waiting_process_gets_the_folder_when_its_holder_ends(tmp_path, capsys):
    folder = tmp_path / "prepared"
    with holding(folder, 0.5) as pid:
        start = time.monotonic()
        with folder_lock(folder, wait=True):
            assert time.monotonic() - start >= 0.3  # after the holder's half second
    assert capsys.readouterr().err == f"waiting for PID {pid}, which is using {folder}\n"
