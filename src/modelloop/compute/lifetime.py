"""A child process that must not outlive its parent: a job under its worker. Left as an orphan, it
would go on with work that the next worker runs again. (A ``train.parallel`` trial worker's OS parent
is Python's fork server, not its search: it watches the search itself, ``training/parallel.py``.)"""

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
