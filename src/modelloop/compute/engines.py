"""Engines run the jobs the scheduler admits: ``local`` (processes on this machine).

The scheduler decides admission, order and preemption; an engine only starts a job's process with
the resources it was given, tells when it ended (exit code, peak memory) and stops it on request:
SIGTERM to its process group, then SIGKILL once the grace period is over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JOB_LAUNCHER", "Handle", "LocalEngine", "kill_group"]

# How a job's modelloop command is started (see _runner.py); tests may give another program.
JOB_LAUNCHER = (sys.executable, "-m", "modelloop.compute._runner")


@dataclass
class Handle:
    """A job's process on this machine."""

    job_id: int
    pid: int
    started: float
    popen: Any = None
    stop: str | None = None               # why it is being stopped: preempt | cancel
    kill_at: float | None = None          # SIGKILL time once SIGTERM was sent
    exit_code: int | None = None
    peak_memory: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group ``pid`` leads; False when it is gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class LocalEngine:
    """Jobs as child processes of the worker, each in its own session (process group)."""

    def __init__(self, launcher: tuple[str, ...] | list[str] = JOB_LAUNCHER):
        self.launcher = list(launcher)

    def start(self, job: dict[str, Any], gpus: list[int]) -> Handle:
        """Start ``job``'s command in its project folder: stderr to its log, stdout beside it."""
        log = Path(job["logs"])
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
               "MODELLOOP_JOB_ID": str(job["id"]), "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as err, open(log.with_suffix(".out"), "wb") as out:
            err.write(f"--- attempt {job['attempts']} ---\n".encode())
            err.flush()
            popen = subprocess.Popen([*self.launcher, *job["command"]], cwd=job["root"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        return Handle(job_id=job["id"], pid=popen.pid, started=time.time(), popen=popen)

    def poll(self, h: Handle) -> bool:
        """True once the process has ended (``exit_code`` and ``peak_memory`` filled in)."""
        if h.exit_code is not None:
            return True
        try:
            pid, status, usage = os.wait4(h.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, usage = h.pid, 0, None
        if pid == 0:
            if h.kill_at is not None and time.time() >= h.kill_at:
                kill_group(h.pid)
                h.kill_at = None
            return False
        kill_group(h.pid)  # whatever the job left running in its group goes with it
        h.exit_code = os.waitstatus_to_exitcode(status) if usage is not None else -1
        h.peak_memory = usage.ru_maxrss * 1024 if usage is not None else None
        if h.popen is not None:
            h.popen.returncode = h.exit_code   # reaped here: Popen must not wait for it again
        return True

    def stop(self, h: Handle, why: str, grace: float) -> None:
        """SIGTERM now, SIGKILL after ``grace`` seconds (checked by ``poll``)."""
        if h.stop is None:
            h.stop = why
            h.kill_at = time.time() + grace
            kill_group(h.pid, signal.SIGTERM)
