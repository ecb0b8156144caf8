"""A child process that must not outlive its parent: a job under its worker, a search trial worker
under its search (``train.parallel``). Left as an orphan, it would go on with work that the next
run does again."""

from __future__ import annotations

import ctypes
import signal

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """On Linux, SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); elsewhere nothing
    (the job's worker then kills an orphan's process group; a search's next run fails its trials)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
