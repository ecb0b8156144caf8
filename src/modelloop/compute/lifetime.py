"""A child process that must not outlive its parent: a job under its worker. Left as an orphan, it
would go on with work that the next worker runs again. (A ``train.parallel`` trial worker's OS parent
is Python's fork server, not its search: it watches the search itself, ``training/parallel.py``.)"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["die_with_parent", "sigterm_interrupts"]


def die_with_parent() -> None:
    """On Linux, SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); elsewhere nothing
    (the job's worker then kills an orphan's process group; a search's next run fails its trials)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, so ``kill`` ends a long-running command the way
    Ctrl-C does, through its ``finally`` clauses (a worker hands its jobs back, a Ray server is deleted).
    Only the main thread can take signals: elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt
