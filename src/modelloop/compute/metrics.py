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
``modelloop_pool_capacity{resource}``                        the local pool (``compute.pool``, this
                                                             machine's where left out): cpus, gpus, memory
``modelloop_pool_utilisation{resource}``                     what the running jobs asked over the pool
===========================================================  ==========================================

``priority`` is the band a job's 0-100 priority is nearest: ``low`` (below 35), ``normal`` (35-64) or
``high`` (65 and up), as ``--priority low|normal|high`` give 20, 50 and 80. The running jobs' request is
held against the local engine's pool; a Ray cluster's resources are not read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .queue import JobQueue
from .resources import Resources
from .worker import epoch_seconds

__all__ = ["BANDS", "QueueCollector", "priority_band"]

BANDS = ("high", "normal", "low")
WAITING = ("queued", "preempted")


def priority_band(priority: int) -> str:
    """The name of the nearest of ``--priority``'s words (80, 50, 20)."""
    return "high" if priority >= 65 else "normal" if priority >= 35 else "low"


class QueueCollector(Collector):
    """A Prometheus collector over one queue; each scrape is one read of the waiting and running jobs.

    ``queue`` and ``pool`` may be given as functions, called at the first scrape (a server does not
    open the catalog or ask ``nvidia-smi`` for a pool before someone looks)."""

    def __init__(self, queue: JobQueue | Callable[[], JobQueue], pool: Resources | Callable[[], Resources],
                 *, clock: Callable[[], float] = time.time):
        self._queue, self._pool, self.clock = queue, pool, clock

    @classmethod
    def of_workspace(cls, ws: Any) -> QueueCollector:
        """The project's queue (its catalog) against its local pool (``compute.pool``)."""
        from .resources import machine_pool

        return cls(lambda: JobQueue(ws.catalog), lambda: machine_pool(ws.config.compute.pool))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names, without reading the catalog (what a registry and the ops kit's check look at)."""
        for name, labels in (("modelloop_jobs_waiting", ["priority"]), ("modelloop_jobs_wait_seconds_max", ["priority"]),
                             ("modelloop_jobs_wait_seconds_sum", ["priority"]), ("modelloop_jobs_running", None),
                             ("modelloop_pool_capacity", ["resource"]), ("modelloop_pool_utilisation", ["resource"])):
            yield GaugeMetricFamily(name, name, labels=labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if callable(self._queue):
            self._queue = self._queue()
        if callable(self._pool):
            self._pool = self._pool()
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
        capacity = GaugeMetricFamily("modelloop_pool_capacity", "the local pool", labels=["resource"])
        share = GaugeMetricFamily("modelloop_pool_utilisation", "what the running jobs asked over the pool",
                                  labels=["resource"])
        pool = self._pool
        for name, asked, has in (("cpus", used.cpus, pool.cpus), ("gpus", used.gpus, pool.gpus),
                                 ("memory", used.memory, pool.memory)):
            capacity.add_metric([name], float(has))
            share.add_metric([name], float(asked) / has if has else 0.0)
        yield capacity
        yield share
