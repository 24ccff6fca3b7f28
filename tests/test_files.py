"""Atomic writes: the one helper, file and folder, complete or absent."""

from __future__ import annotations

import os

import pytest

from maxvit.files import (
    atomic_write,
    check_writable,
    sha256_file,
    staging_dir,
    write_json,
    write_text,
)


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
    with pytest.raises(FileNotFoundError) as info:
        check_writable(tmp_path / "missing" / "model.onnx")
    assert info.value.filename == str(tmp_path / "missing")
    with pytest.raises(OSError) as info:
        check_writable("/proc/model.onnx")  # writable for nobody, root included
    assert info.value.filename == "/proc"
