"""The ``ray`` engine: an address that does not answer, and jobs run as tasks of a real local Ray."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from clirun import cli
from jobs_toy import LAUNCHER, make_project, sleep_job, states, wait_for

from modelloop.catalog import Catalog
from modelloop.compute import ComputeConfig
from modelloop.compute.queue import FINISHED, JobQueue
from modelloop.compute.worker import Worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_that_does_not_answer_exits_2_naming_it(tmp_path, capsys):
    port = _free_port()
    make_project(tmp_path, {"engine": "ray", "address": f"127.0.0.1:{port}"})
    code, _, err = cli(["worker"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in err and "ray start --head" in err


RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_jobs_run_as_tasks_of_a_real_local_ray_with_preemption(tmp_path):
    """Slow (Ray's start and stop take 15-30 s here). The same scheduling (a high job stops a low one,
    which runs again after) is covered in the default run by test_jobs_worker's
    test_a_high_job_preempts_a_low_one_which_then_runs_again on the local engine."""
    pytest.importorskip("ray")
    from modelloop.compute.ray_engine import RayEngine, cluster_pool, connect_ray

    port = _free_port()
    temp = tempfile.mkdtemp(prefix="mlray", dir="/tmp")     # Ray's socket paths must stay short
    # HOME too: a token a local ray.init() once left in ~/.ray would turn on the head's authentication,
    # which a driver without it then fails (Ray 2.60)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": temp}
    # `ray start --head --block` in a session of its own: its processes are ended by that group's id
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", f"--port={port}",
                             "--num-cpus", "1", "--num-gpus", "0", "--include-dashboard", "false",
                             "--disable-usage-stats", f"--temp-dir={temp}"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _answers(port) or head.poll() is not None, timeout=120, what="Ray's head to answer")
        assert head.poll() is None, head.stderr.read().decode()[-2000:] if head.stderr else ""
        ray = connect_ray(f"127.0.0.1:{port}")
        pool = cluster_pool(ray)
        assert pool.cpus == 1 and pool.gpus == 0
        queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
        marker = tmp_path / "done"
        w = Worker(queue, ComputeConfig(poll_seconds=0.05, grace_seconds=5, engine="ray"), pool,
                   RayEngine(ray, LAUNCHER, grace=5))
        low = sleep_job(queue, tmp_path, 3.0, marker, priority=20)
        end = time.monotonic() + 60
        while queue.get(low)["state"] != "running":
            w.step()
        time.sleep(1.0)
        high = sleep_job(queue, tmp_path, 0.2, marker, priority=80)
        while any(queue.get(i)["state"] not in FINISHED for i in (low, high)):
            assert time.monotonic() < end, [queue.get(i)["state"] for i in (low, high)]
            w.step()
            time.sleep(0.05)
        assert states(queue, low) == ["queued", "running", "preempted", "running", "succeeded"]
        assert states(queue, high) == ["queued", "running", "succeeded"]
        assert [line.split()[0] for line in marker.read_text().splitlines()] == [str(high), str(low)]
    finally:
        try:
            import ray as ray_module

            ray_module.shutdown()
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
