"""Helpers of the compute tests: a project folder with a ``compute:`` section, a job program that only
sleeps (launched in place of ``modelloop``'s runner, so scheduling tests do not pay modelloop's start-up
per job), and a worker run in-process."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

SLEEPER = Path(__file__).parent / "compute" / "jobs_sleeper.py"
LAUNCHER = (sys.executable, str(SLEEPER))


def make_project(root: Path, compute: dict[str, Any] | None = None, catalog: str | None = None) -> Path:
    """A project folder whose config is enough for ``modelloop jobs`` and ``modelloop status``."""
    root.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {"name": "jobsproj", "data": {"source": "data.csv", "target": "y"},
                           "compute": {"pool": {"cpus": 2, "gpus": 2, "memory": "4GiB"}, "poll_seconds": 0.05,
                                       "grace_seconds": 2, **(compute or {})}}
    if catalog:
        raw["storage"] = {"catalog": catalog}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    return root / "modelloop.yaml"


def sleep_job(queue, root: Path, seconds: float, marker: Path, *, priority: int = 50, cpus: float = 1,
              gpus: int = 0, project: str = "jobsproj", ignore_term: bool = False, verb: str = "sleep") -> int:
    """Queue a job of the sleeper program: it sleeps, then appends ``<job id> <CUDA_VISIBLE_DEVICES>``."""
    return queue.submit(project=project, root=str(root),
                        command=["sleep", str(seconds), str(marker), "ignore" if ignore_term else "term"],
                        resources={"cpus": cpus, "gpus": gpus, "memory": 0, "custom": {}}, priority=priority,
                        submitter="test", features={"verb": verb, "rows": None}, logs_dir=str(root / "jobs"))


def wait_for(predicate, timeout: float = 20.0, every: float = 0.05, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def states(queue, job_id: int) -> list[str]:
    return [e["state"] for e in queue.history([job_id])[job_id]]
