"""Stopping a run cleanly on SIGINT / SIGTERM (Ctrl-C, `timeout`, a cluster's pre-emption notice).

While `stop_signals()` is active, the first SIGINT or SIGTERM only records a stop request; the training
loop sees it at the end of its current iteration (`stop_requested()`), writes a checkpoint at that step
(unless one is already there) and returns. A second signal raises `StopNow` at once, wherever the process
is (a checkpoint being written is then left as a `*.tmp` file that the next start removes).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)
_requested: list[int] = []  # the signals received while `stop_signals()` is active


class StopNow(KeyboardInterrupt):
    """Raised by a second stop signal: leave at once.

    Attributes:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_requested() -> bool:
    """Whether a stop signal arrived (the training loop ends after its current iteration)."""
    return bool(_requested)


def stop_signal() -> int | None:
    """The first stop signal received, or None."""
    return _requested[0] if _requested else None


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by signal `signum`: 128 + signum (130 SIGINT, 143 SIGTERM)."""
    return 128 + signum


def _handle(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)
    if len(_requested) > 1:
        raise StopNow(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into stop requests inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handle) for signum in HANDLED}
    _requested.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()
