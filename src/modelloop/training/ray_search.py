"""``train.parallel: N`` with ``compute.engine: ray``: the N search workers are Ray tasks on the cluster.

The same worker as the local processes (:func:`modelloop.training.parallel._worker`): it loads the study
from the shared Optuna storage, asks, runs and tells trials until the shared deadline or ``n_trials``,
and sends each finished trial back; only the transport differs:

* each worker is a Ray task asking ``num_cpus: 1`` (Ray places it; its CPU is the cluster's to give,
  so a queued job on the Ray engine does not hold it too, see ``compute/jobs.py``);
* the lock under which a worker counts and asks is a small async Ray actor (:class:`AskLock`), the
  finished trials come back through a ``ray.util.queue.Queue``;
* the deadline is the search's start on the wall clock, turned into each node's monotonic clock;
* no start barrier: a worker starts when Ray places it;
* a stopped search (Ctrl-C, a job's SIGTERM) cancels the tasks (``ray.cancel``: KeyboardInterrupt in
  each, which abandons its trial as a local worker does) and fails the trials still RUNNING, so the next
  run queues them again; a task on a node that died surfaces as its Ray error.

The storage must reach every node: SQLite in the project folder on one machine or a shared file system
(as the ``ray`` job engine needs), PostgreSQL on a cluster (``storage.optuna``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError
from .parallel import _worker, message_taker
from .search import abandon, finished, spent

__all__ = ["AskLock", "ray_search_loop"]


class AskLock:
    """One asker at a time across the cluster (the Ray actor behind a worker's ``with asking:``)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None

    def _get(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def acquire(self) -> None:
        await self._get().acquire()

    async def release(self) -> None:
        if self._get().locked():
            self._get().release()


class _Asking:
    """``with asking:`` over an :class:`AskLock` actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __enter__(self) -> None:
        import ray

        ray.get(self.actor.acquire.remote())

    def __exit__(self, *exc: Any) -> None:
        import ray

        ray.get(self.actor.release.remote())


class _NoBarrier:
    """Ray starts each task when it places it: no peer to wait for."""

    def wait(self, timeout: float | None = None) -> None:
        return None

    def abort(self) -> None:
        return None


def _ray_worker(index: int, storage: str, study_name: str, run_trial: Callable[..., Any], seed: int,
                group: bool, budget: float | None, n_trials: int | None, spent_before: float,
                start_wall: float, lock: Any, results: Any) -> None:
    """The Ray task: :func:`~modelloop.training.parallel._worker` with the search's start on this node's
    monotonic clock."""
    import ray

    start = time.monotonic() - (time.time() - start_wall)
    task = ray.get_runtime_context().get_task_id()
    _worker(index, storage, study_name, run_trial, seed, group, budget, n_trials, spent_before, start,
            _NoBarrier(), _Asking(lock), results, process=f"{socket.gethostname()}:{os.getpid()} ray task {task}")


def _workers_that_fit(workers: int, total: float, held: float, address: str) -> int:
    """The search tasks (1 CPU each) that can run at once beside the job that starts them; none is a
    ConfigError: a task never placed would leave the search waiting for ever."""
    room = int(total - held)
    job = f" beside the job that starts it ({held:g} CPU)" if held else ""
    if room < 1:
        raise ConfigError(f"train.parallel: the Ray cluster at {address} has {total:g} CPUs, none free for the "
                          f"search's Ray tasks (1 CPU each){job}: they would wait for ever; add CPUs to the "
                          "cluster, or submit the job with fewer --cpus")
    if workers > room:
        logging.getLogger(__name__).warning(
            "train.parallel: %d asked, %d run at once: the Ray cluster at %s has %g CPUs%s", workers, room,
            address, total, job)
    return min(workers, room)


def ray_search_loop(study: optuna.Study, storage: str, run_trial: Callable[..., Any], *, address: str,
                    workers: int, seed: int, group: bool, budget: float | None, n_trials: int | None,
                    on_trial: Callable[[Any], Any] | None = None,
                    progress: Callable[[int, float], None] | None = None) -> None:
    """Run the search with ``workers`` Ray tasks on ``address`` (``auto``: a local Ray); returns when
    every task has ended. An address that does not answer is a ConfigError naming it; so is a cluster with
    no CPU beside the job that starts the search (its tasks would wait for ever), and with fewer CPUs
    there than ``workers`` the search runs that many at once and says so (a logged warning)."""
    from ..compute.ray_engine import connect_ray, cpus_beside_job

    try:
        import ray as installed
        joined_here = not installed.is_initialized()
    except ImportError:
        joined_here = False      # connect_ray says how to install it
    ray = connect_ray(address)
    try:
        workers = _workers_that_fit(workers, *cpus_beside_job(ray), address)
    except ConfigError:
        if joined_here:
            ray.shutdown()
        raise
    from ray.util.queue import Empty, Queue

    spent_before = spent(study)
    start_wall, start = time.time(), time.monotonic()
    results = Queue(actor_options={"num_cpus": 0})
    lock = ray.remote(AskLock).options(num_cpus=0).remote()
    task = ray.remote(_ray_worker).options(num_cpus=1, max_retries=0,
                                           # a worker's own threads (boosting libraries) stay within its CPU
                                           runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    shared = ray.put(run_trial)
    refs = [task.remote(i, storage, study.study_name, shared, seed, group, budget, n_trials, spent_before,
                        start_wall, lock, results) for i in range(workers)]
    n_done = len(finished(study))
    take = message_taker(on_trial, progress, spent_before, start)

    try:
        while True:
            try:
                kind, payload = results.get(timeout=0.2)
            except Empty:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                if len(done) == len(refs):
                    ray.get(refs)        # a task that died (its node, its process) raises here
                    break
                continue
            n_done = take(kind, payload, n_done)
        while not results.empty():       # what a task told after the last look
            kind, payload = results.get(timeout=1.0)
            n_done = take(kind, payload, n_done)
    except BaseException:
        for ref in refs:
            ray.cancel(ref)
        ray.wait(refs, num_returns=len(refs), timeout=10)    # each abandons its trial
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            abandon(study, stale)
        raise
    finally:
        for actor in (lock, results.actor):
            try:
                ray.kill(actor)
            except Exception:  # the cluster went away first
                pass
        if joined_here:          # this search started or joined Ray: it leaves it as it found it
            ray.shutdown()
