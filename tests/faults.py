"""Real faults for the robustness tests: a small file system, another process holding a folder
(import as `from tests.faults import holding, tmpfs`)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.train.utils import subprocess_env

HOLD = """import sys, time
from maxvit.files import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: 64k, 2m) mounted on `folder` (made here) for the
    block; the test is skipped where none can be mounted (not root, no mount command)."""
    folder.mkdir(parents=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        )
    except OSError:
        pytest.skip("no mount command here")
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def holding(folder: Path, seconds: float) -> Iterator[int]:
    """Another process holds `folder` (`maxvit.files.folder_lock`) for `seconds` from the start
    of the block (its PID is given); it is killed at the end of the block."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE, env=subprocess_env(), text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
