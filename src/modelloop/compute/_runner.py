"""A job's process: ``python -m modelloop.compute._runner ARGS`` runs ``modelloop ARGS`` as the worker's child.

Two things differ from a shell's ``modelloop``: SIGTERM (a preemption or a cancel) is raised as
KeyboardInterrupt, so a search fails and re-queues the trial in progress and exits 130 as Ctrl-C would;
and on Linux the process is killed when its worker dies (``PR_SET_PDEATHSIG``), so a worker killed with
SIGKILL leaves no orphan to finish a job that the next worker runs again.
"""

from __future__ import annotations

import runpy
import signal
import sys
from typing import Any

from .lifetime import die_with_parent


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    die_with_parent()
    signal.signal(signal.SIGTERM, _interrupt)
    sys.argv = ["modelloop", *sys.argv[1:]]
    runpy.run_module("modelloop.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
