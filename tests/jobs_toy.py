"""Helpers of the compute tests: a project folder with a ``compute:`` section, a job program that only
sleeps (launched in place of ``modelloop``'s runner, so scheduling tests do not pay modelloop's start-up
per job), and a worker run in-process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


@contextlib.contextmanager
def ray_head(cpus: int = 1) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Ray head on 127.0.0.1 (``ray start --head --block`` in a session of its own, ended by that
    group's id); yields its address and the environment a driver process should run with."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="mlray", dir="/tmp")     # Ray's socket paths must stay short
    # HOME too: a token a local ray.init() once left in ~/.ray would turn on the head's authentication,
    # which a driver without it then fails (Ray 2.60)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp}
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", f"--port={port}",
                             "--num-cpus", str(cpus), "--num-gpus", "0", "--include-dashboard", "false",
                             "--disable-usage-stats", f"--temp-dir={temp}"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _answers(port) or head.poll() is not None, timeout=120, what="Ray's head to answer")
        assert head.poll() is None, head.stderr.read().decode()[-2000:] if head.stderr else ""
        yield f"127.0.0.1:{port}", env
    finally:
        _end_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the head's process group (Ray's processes), SIGKILL to what is left after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def linear_project(root: Path, serve: dict | None = None, compute: dict | None = None) -> Any:
    """A project of the toy table (tests/toy.py) ingested, two linear versions registered (v1 production)."""
    from toy import RAW_CONFIG, make_table, register_linear

    from modelloop.config import parse_config
    from modelloop.project import Project
    from modelloop.registry import promote

    root.mkdir(parents=True, exist_ok=True)
    make_table(300).to_csv(root / "data.csv", index=False)
    raw = {**RAW_CONFIG, "serve": serve or {}, "compute": compute or {}}
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))
    project = Project(parse_config(raw, root=root))
    project.ingest()
    assert register_linear(project.workspace) == 1 and register_linear(project.workspace) == 2
    promote(project.workspace, "toy:1")
    return project


def table_records(n: int = 8) -> list[dict]:
    """JSON records of the toy table (no target), as a client sends them."""
    from toy import make_table

    df = make_table(n, seed=1).drop(columns=["y"])
    return [{k: (None if v != v else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]
