"""The ``ray`` engine: an address that does not answer, and jobs run as tasks of a real local Ray."""

from __future__ import annotations

import socket
import time

import pytest
from clirun import cli
from jobs_toy import LAUNCHER, make_project, ray_head, sleep_job, states

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


@pytest.mark.slow
def test_jobs_run_as_tasks_of_a_real_local_ray_with_preemption(tmp_path):
    """Slow (Ray's start and stop take 15-30 s here). The same scheduling (a high job stops a low one,
    which runs again after) is covered in the default run by test_jobs_worker's
    test_a_high_job_preempts_a_low_one_which_then_runs_again on the local engine."""
    pytest.importorskip("ray")
    from modelloop.compute.ray_engine import RayEngine, cluster_pool, connect_ray

    with ray_head(cpus=1) as (address, _):
        try:
            ray = connect_ray(address)
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
            import ray as ray_module

            ray_module.shutdown()


def test_auto_joins_the_ray_of_the_worker_that_runs_the_job(tmp_path, monkeypatch):
    """A job the Ray engine runs has RAY_ADDRESS set to its worker's Ray, which compute.address: auto joins
    (checked first: one that does not answer is the usual exit-2 error naming it), instead of starting a
    second local Ray beside the worker's. The worker's side is the slow test below."""
    from modelloop.compute.ray_engine import connect_ray
    from modelloop.errors import ConfigError

    address = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at {address}"):
        connect_ray("auto")


JOINER = ("import sys; from modelloop.compute.ray_engine import connect_ray; "
          "open(sys.argv[1], 'w').write(connect_ray('auto').get_runtime_context().gcs_address)")


@pytest.mark.slow
def test_a_job_of_the_ray_engine_joins_its_workers_ray(tmp_path):
    """Slow (a Ray head, and the job's process joining it: 20-40 s here)."""
    pytest.importorskip("ray")
    import sys

    from modelloop.compute.ray_engine import RayEngine, cluster_pool, connect_ray

    with ray_head(cpus=1) as (address, _):
        try:
            ray = connect_ray(address)
            queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
            w = Worker(queue, ComputeConfig(poll_seconds=0.05, engine="ray"), cluster_pool(ray),
                       RayEngine(ray, (sys.executable, "-c", JOINER)))
            out = tmp_path / "joined"
            job = queue.submit(project="p", root=str(tmp_path), command=[str(out)], priority=50, submitter="t",
                               resources={"cpus": 1, "gpus": 0, "memory": 0, "custom": {}}, features={},
                               logs_dir=str(tmp_path / "jobs"))
            end = time.monotonic() + 120
            while queue.get(job)["state"] not in FINISHED:
                assert time.monotonic() < end
                w.step()
                time.sleep(0.1)
            assert queue.get(job)["state"] == "succeeded", (tmp_path / "jobs").glob("*")
            assert out.read_text() == ray.get_runtime_context().gcs_address
        finally:
            import ray as ray_module

            ray_module.shutdown()
