"""The exceptions the CLI turns into one line and a non-zero exit: bad input, and a run stopped
by a signal (`signals_interrupt` turns SIGINT and SIGTERM into one for a block)."""

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class UserError(ValueError):
    """Bad input from the user (missing file, wrong name, invalid option, impossible geometry).

    `maxvit` prints ``error: <message>`` on one line and exits with status 2. For library users
    it is a ``ValueError``, what Python code raises for a bad argument (the model code raises
    it too, e.g. for an input size its stages cannot divide).
    """


class Interrupted(Exception):
    """A run stopped on a signal (training after checkpointing; a command that writes its output
    atomically after removing the unfinished part); `maxvit` prints the message (what was saved
    and how to resume) and exits with `exit_code` (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def signals_interrupt(doing: str) -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises `Interrupted` ("SIGTERM while
    <doing>", exit status 130 or 143), so that the block's cleanup runs: an atomic output's
    temporary folder is removed (`maxvit.files.staging_dir`) and `maxvit` prints that one line.
    Further signals are ignored until the block has ended, so the cleanup is not cut short.
    Does nothing outside the main thread (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}

    def handle(signum: int, frame: FrameType | None) -> None:
        for sig in names:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(f"{names[signum]} while {doing}", 128 + signum)

    previous = {sig: signal.signal(sig, handle) for sig in names}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
