"""SIGINT and SIGTERM during training: stop after the current step with a checkpoint.

SLURM, Kubernetes and spot instances send SIGTERM before they pre-empt a job; Ctrl-C sends
SIGINT. While `StopSignals` is active, the first of either only sets :attr:`signal`: the loop
finishes the step it is in, checkpoints it and exits. A second signal acts at once, as without
the handler (SIGINT raises KeyboardInterrupt, SIGTERM terminates).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from maxvit.errors import Interrupted

NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells do


class StopSignals:
    """Context manager that turns the first SIGINT/SIGTERM into a request to stop."""

    def __init__(self) -> None:
        self.signal: int | None = None  # the first signal received, if any
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # the second one: act as if we were not here
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signum
        print(
            f"{NAMES[signum]}: stopping after this step with a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def interrupted(self, where: str, checkpoint: Path, out: Path) -> Interrupted:
        """The error that ends a run stopped by the signal, once its step is checkpointed: what
        was saved, how to resume, and the shell's exit code for the signal."""
        name = NAMES.get(self.signal, "a signal on another rank")
        return Interrupted(
            f"{name} {where}; checkpoint {checkpoint}; resume with: maxvit train --resume "
            f"--out {out}",
            EXIT_CODES.get(self.signal, 143),
        )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for sig in NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()
