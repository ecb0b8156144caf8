"""The job queue on ``/metrics`` (issue 24 part 7): read from the catalog at each scrape, so any process
that can reach the queue reports the same figures (the prediction server does, beside its own).

===========================================================  ==========================================
name                                                         what
===========================================================  ==========================================
``modelloop_jobs_waiting{priority}``                         queue length: queued and preempted jobs
``modelloop_jobs_wait_seconds_max{priority}``                the longest wait of a waiting job (from
                                                             its submission; 0 when none waits): the
                                                             alert on a high-priority job waiting
``modelloop_jobs_wait_seconds_sum{priority}``                the waits of the waiting jobs, summed
                                                             (over ``modelloop_jobs_waiting``: the mean)
``modelloop_jobs_running``                                   jobs running on any worker
``modelloop_pool_capacity{resource}``                        the pool (:class:`PoolSource`): cpus, gpus,
                                                             memory and each custom resource
``modelloop_pool_utilisation{resource}``                     what the running jobs asked over the pool
===========================================================  ==========================================

``priority`` is the band a job's 0-100 priority is nearest: ``low`` (below 35), ``normal`` (35-64) or
``high`` (65 and up), as ``--priority low|normal|high`` give 20, 50 and 80. The running jobs' request is
held against ``compute.engine``'s pool: the local engine's (``compute.pool``, this machine's where left
out), or on Ray the cluster's resources (:class:`PoolSource`); while a cluster's figures are not known
yet (or it does not answer), the two pool families are left out, never made up.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import ComputeConfig
from .queue import JobQueue
from .resources import Resources, machine_pool
from .worker import epoch_seconds

__all__ = ["BANDS", "PoolSource", "QueueCollector", "priority_band"]

BANDS = ("high", "normal", "low")
WAITING = ("queued", "preempted")


def priority_band(priority: int) -> str:
    """The name of the nearest of ``--priority``'s words (80, 50, 20)."""
    return "high" if priority >= 65 else "normal" if priority >= 35 else "low"


class PoolSource:
    """The pool ``/metrics`` holds the running jobs' requests against, for ``compute.engine``:

    * ``local``: ``compute.pool`` (this machine's figures where left out), read once;
    * ``ray``, in a process joined to Ray (``modelloop worker``, ``serve --engine ray``): the cluster's
      resources as Ray reports them at each scrape (nodes come and go);
    * ``ray`` with ``address: auto``, not joined: what the local Ray that ``auto`` starts has
      (``compute.pool``'s figures, and Ray's own memory figure, as ``jobs submit`` checks), read once;
    * ``ray`` with a cluster address, not joined: the cluster's resources, read in a background thread
      every ``refresh`` seconds (joining a cluster takes seconds: a scrape never waits for it); None until
      the first read, and while the cluster does not answer."""

    def __init__(self, cfg: ComputeConfig, refresh: float = 60.0):
        self.cfg, self.refresh = cfg, refresh
        self._value: Resources | None = None
        self._read_at = -math.inf
        self._reading = threading.Lock()

    def __call__(self) -> Resources | None:
        from .ray_engine import cluster_pool, local_ray_pool

        cfg = self.cfg
        ray = sys.modules.get("ray")
        if cfg.engine == "ray" and ray is not None and ray.is_initialized():
            return cluster_pool(ray)
        if cfg.engine == "local" or cfg.address == "auto":
            if self._value is None:
                self._value = machine_pool(cfg.pool) if cfg.engine == "local" else local_ray_pool(cfg.pool)
            return self._value
        if time.monotonic() - self._read_at >= self.refresh and self._reading.acquire(blocking=False):
            threading.Thread(target=self._read, daemon=True, name="modelloop-ray-pool").start()
        return self._value

    def _read(self) -> None:
        from .ray_engine import read_cluster

        try:
            self._value = read_cluster(self.cfg.address)[0]
        finally:
            self._read_at = time.monotonic()
            self._reading.release()


class QueueCollector(Collector):
    """A Prometheus collector over one queue; each scrape is one read of the waiting and running jobs.

    ``queue`` may be given as a function, called at the first scrape (a server does not open the catalog
    before someone looks); ``pool`` as a function called at each scrape (a :class:`PoolSource`: it
    reads nothing before someone looks either), whose None leaves the pool's figures out."""

    def __init__(self, queue: JobQueue | Callable[[], JobQueue],
                 pool: Resources | Callable[[], Resources | None], *, clock: Callable[[], float] = time.time):
        self._queue, self._pool, self.clock = queue, pool, clock

    @classmethod
    def of_workspace(cls, ws: Any) -> QueueCollector:
        """The project's queue (its catalog) against its pool (``compute``: the local one or Ray's)."""
        return cls(lambda: JobQueue(ws.catalog), PoolSource(ws.config.compute))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names, without reading the catalog (what a registry and the ops kit's check look at)."""
        for name, labels in (("modelloop_jobs_waiting", ["priority"]), ("modelloop_jobs_wait_seconds_max", ["priority"]),
                             ("modelloop_jobs_wait_seconds_sum", ["priority"]), ("modelloop_jobs_running", None),
                             ("modelloop_pool_capacity", ["resource"]), ("modelloop_pool_utilisation", ["resource"])):
            yield GaugeMetricFamily(name, name, labels=labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if callable(self._queue):
            self._queue = self._queue()
        pool = self._pool() if callable(self._pool) else self._pool
        try:
            rows = self._queue.rows(states=(*WAITING, "running"))
        except Exception:  # a catalog out of reach leaves the rest of /metrics answering
            return
        now = self.clock()
        waiting = GaugeMetricFamily("modelloop_jobs_waiting", "queued and preempted jobs", labels=["priority"])
        longest = GaugeMetricFamily("modelloop_jobs_wait_seconds_max", "the longest wait of a waiting job",
                                    labels=["priority"])
        total = GaugeMetricFamily("modelloop_jobs_wait_seconds_sum", "the waits of the waiting jobs, summed",
                                  labels=["priority"])
        by_band: dict[str, list[float]] = {b: [] for b in BANDS}
        for row in rows:
            if row["state"] in WAITING:
                by_band[priority_band(int(row["priority"]))].append(max(0.0, now - epoch_seconds(row["submitted_at"])))
        for band, waits in by_band.items():
            waiting.add_metric([band], len(waits))
            longest.add_metric([band], max(waits, default=0.0))
            total.add_metric([band], sum(waits))
        yield from (waiting, longest, total)
        running = [r for r in rows if r["state"] == "running"]
        yield GaugeMetricFamily("modelloop_jobs_running", "jobs running on any worker", value=len(running))
        used = Resources(cpus=0.0)
        for r in running:
            used = used + Resources.of(r["resources"] or {})
        if pool is None:  # a Ray cluster not read yet, or not answering
            return
        capacity = GaugeMetricFamily("modelloop_pool_capacity", "the pool: compute.pool, or the Ray cluster's",
                                     labels=["resource"])
        share = GaugeMetricFamily("modelloop_pool_utilisation", "what the running jobs asked over the pool",
                                  labels=["resource"])
        for name, asked, has in (("cpus", used.cpus, pool.cpus), ("gpus", used.gpus, pool.gpus),
                                 ("memory", used.memory, pool.memory),
                                 *((k, used.custom.get(k, 0.0), v) for k, v in sorted(pool.custom.items()))):
            capacity.add_metric([name], float(has))
            share.add_metric([name], float(asked) / has if has else 0.0)
        yield capacity
        yield share
