"""The job queue on the prediction server's ``/metrics`` (issue 24 part 7): queue length and wait by
priority, running jobs, pool capacity and utilisation, read from the catalog at each scrape."""

from __future__ import annotations

import time

import httpx
import pytest
from jobs_toy import make_project, ray_head, sleep_job
from prometheus_client.parser import text_string_to_metric_families
from servers import running

from modelloop.compute.metrics import priority_band
from modelloop.compute.queue import JobQueue
from modelloop.config import load_config
from modelloop.serving.app import create_app
from modelloop.workspace import Workspace


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_queue_length_waits_running_jobs_and_pool_use_are_on_the_servers_metrics(tmp_path):
    ws = Workspace(load_config(make_project(tmp_path)))   # pool: 2 CPUs, 2 GPUs, 4 GiB
    queue = JobQueue(ws.catalog)
    marker = tmp_path / "m"
    high = sleep_job(queue, tmp_path, 1, marker, priority=80, gpus=1)
    sleep_job(queue, tmp_path, 1, marker, priority=20)
    sleep_job(queue, tmp_path, 1, marker, priority=10)
    queue.schedule("test:1", lambda waiting: {high: {"gpus": [0]}})   # the high one runs: 1 CPU, 1 GPU
    time.sleep(0.05)
    waiting_high = sleep_job(queue, tmp_path, 1, marker, priority=90)
    with running(create_app(ws), ready=False) as url:
        text = _wait_metrics(url)
    m = _samples(text)
    assert m[("modelloop_jobs_waiting", (("priority", "low"),))] == 2
    assert m[("modelloop_jobs_waiting", (("priority", "high"),))] == 1
    assert m[("modelloop_jobs_waiting", (("priority", "normal"),))] == 0
    assert m[("modelloop_jobs_running", ())] == 1
    # the two low jobs waited longer than the high one submitted after them
    low_max = m[("modelloop_jobs_wait_seconds_max", (("priority", "low"),))]
    high_max = m[("modelloop_jobs_wait_seconds_max", (("priority", "high"),))]
    assert low_max > high_max >= 0 and m[("modelloop_jobs_wait_seconds_max", (("priority", "normal"),))] == 0
    assert m[("modelloop_jobs_wait_seconds_sum", (("priority", "low"),))] >= low_max
    assert m[("modelloop_pool_capacity", (("resource", "gpus"),))] == 2
    assert m[("modelloop_pool_utilisation", (("resource", "gpus"),))] == 0.5
    assert m[("modelloop_pool_utilisation", (("resource", "cpus"),))] == 0.5
    assert m[("modelloop_pool_utilisation", (("resource", "memory"),))] == 0
    assert ("modelloop_model_ready", ()) in m                           # the server's own metrics stay

    queue.cancel(waiting_high)      # read again at the next scrape: no cache to go stale
    with running(create_app(ws), ready=False) as url:
        m = _samples(_wait_metrics(url))
    assert m[("modelloop_jobs_waiting", (("priority", "high"),))] == 0


def test_priority_bands_follow_the_priority_words():
    assert [priority_band(p) for p in (0, 20, 34, 35, 50, 64, 65, 80, 100)] == \
        ["low", "low", "low", "normal", "normal", "normal", "high", "high", "high"]


def test_on_ray_with_address_auto_the_pool_is_the_local_rays_with_rays_memory_figure(tmp_path):
    """compute.engine: ray, address auto, memory left out: the pool on /metrics is what the local Ray
    that auto starts has (Ray's own memory figure: available memory less its object store, not the
    machine's RAM), its custom resources included; a running job's request is held against it."""
    import os

    from modelloop.compute.ray_engine import local_ray_pool

    ws = Workspace(load_config(make_project(tmp_path, {"engine": "ray",
                                                       "pool": {"cpus": 2, "gpus": 0, "custom": {"licence": 2}}})))
    queue = JobQueue(ws.catalog)
    job = queue.submit(project="jobsproj", root=str(tmp_path), command=["status"], priority=50, submitter="t",
                       resources={"cpus": 1, "gpus": 0, "memory": 2**30, "custom": {"licence": 1}}, features={},
                       logs_dir=str(tmp_path / "logs"))
    queue.schedule("test:1", lambda waiting: {job: {"gpus": []}})
    with running(create_app(ws), ready=False) as url:
        m = _samples(_wait_metrics(url))
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ray_memory = local_ray_pool(ws.config.compute.pool).memory
    capacity = m[("modelloop_pool_capacity", (("resource", "memory"),))]
    assert capacity < 0.9 * machine and capacity == pytest.approx(ray_memory, rel=0.1)  # free memory moves
    assert m[("modelloop_pool_utilisation", (("resource", "memory"),))] == pytest.approx(2**30 / capacity)
    assert m[("modelloop_pool_capacity", (("resource", "licence"),))] == 2
    assert m[("modelloop_pool_utilisation", (("resource", "licence"),))] == 0.5


@pytest.mark.slow
def test_on_a_ray_cluster_the_pool_is_the_clusters_resources(tmp_path):
    """Slow (a real ray start --head: 15-30 s here). Not joined to Ray, the cluster's resources are read
    in the background (a scrape never waits for the join); joined, they are read at each scrape."""
    pytest.importorskip("ray")
    import ray

    from modelloop.compute import ComputeConfig
    from modelloop.compute.metrics import PoolSource
    from modelloop.compute.ray_engine import connect_ray

    with ray_head(cpus=1) as (address, _):
        source = PoolSource(ComputeConfig(engine="ray", address=address, pool={"cpus": 8, "gpus": 2}))
        t0 = time.monotonic()
        assert source() is None                # the first scrape starts the read and does not wait
        assert time.monotonic() - t0 < 1
        while (pool := source()) is None:
            assert time.monotonic() - t0 < 120, "the cluster's resources were never read"
            time.sleep(0.2)
        assert (pool.cpus, pool.gpus) == (1, 0) and pool.memory > 0   # the cluster's, not compute.pool's
        try:
            connect_ray(address)
            assert source().cpus == 1              # joined: read from Ray at each scrape
        finally:
            ray.shutdown()


def _wait_metrics(url: str) -> str:
    end = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(f"{url}/metrics", timeout=5)
            if r.status_code == 200:
                return r.text
        except httpx.HTTPError:
            pass
        assert time.monotonic() < end, "the server never answered /metrics"
        time.sleep(0.1)
