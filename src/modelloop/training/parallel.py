"""``train.parallel: N``: N search trials at once, in worker processes sharing the Optuna storage.

The single-process :func:`~modelloop.training.search.search_loop` keeps its budget semantics here:

* the study is opened (stale trials failed and queued again) once, by the caller, before any worker
  starts; a worker only *loads* it, so it never abandons a peer's running trial;
* the workers start together (a barrier after their imports), then each asks, runs and tells trials
  until the shared deadline (``budget`` minus the time spent in earlier runs, from one clock) or until
  ``n_trials`` trials are finished or running (counted and asked under one lock); every trial, the
  first included, is given that deadline and stops there with what it reached; while the study has no
  completed trial and none running, a worker starts one even past a spent budget (one model at least);
* each worker's sampler is TPE seeded apart from its peers, with ``constant_liar`` so that peers
  asking at the same time do not get the same suggestion;
* finished trials come back to the parent over a queue, which calls ``on_trial`` and ``progress``
  there (the tracker's nested runs are written by one process);
* a killed search (Ctrl-C, SIGTERM to the job's process group, kill -9) leaves its finished trials in
  the storage; the next run's ``open_study`` fails the trials left RUNNING and queues them again.

``run_trial(study, trial, deadline)`` must be picklable (a module-level function or a
``functools.partial`` of one). Workers are forked from a fork server (Python's ``forkserver``), not
from the search's process: the boosting libraries' OpenMP runtimes, which that process may have used,
are not safe across a fork. As with any ``multiprocessing`` start method but fork, a script that
searches must guard its top level with ``if __name__ == "__main__":`` (the workers import it).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from .search import SPENT_KEY, abandon, finished, spent, tpe_sampler

__all__ = ["PROCESS_KEY", "WORKER_KEY", "message_taker", "parallel_search_loop", "storage_for"]

WORKER_KEY = "modelloop_worker"   # trial user attr: which worker (0..N-1) ran it
PROCESS_KEY = "modelloop_process"  # trial user attr: the worker's host:pid (and its Ray task on that engine)
_START_TIMEOUT_S = 120.0          # a worker not ready by then: its peers start without it
R = TypeVar("R")


def storage_for(url: str) -> optuna.storages.BaseStorage | str:
    """The storage as several processes share it: SQLite waits for a peer's write lock (30 s) rather
    than failing a trial with 'database is locked'."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    return url


def parallel_search_loop(study: optuna.Study, storage: str, run_trial: Callable[[optuna.Study, optuna.Trial, float], R],
                         *, workers: int, seed: int, group: bool, budget: float | None, n_trials: int | None,
                         on_trial: Callable[[R], Any] | None = None,
                         progress: Callable[[int, float], None] | None = None) -> None:
    """Run the search with ``workers`` processes; returns when every worker has stopped. (On the Ray
    engine: :func:`modelloop.training.ray_search.ray_search_loop`, the same workers as Ray tasks.)"""
    spent_before = spent(study)
    ctx = mp.get_context("forkserver")
    # the fork server imports the trial's module once (and stays for this process's later searches):
    # each worker is a fork of it, with no import to wait for
    module = getattr(getattr(run_trial, "func", run_trial), "__module__", None)
    ctx.set_forkserver_preload([m for m in ("optuna", module) if m])
    results: Any = ctx.Queue()
    barrier = ctx.Barrier(workers)
    asking = ctx.Lock()
    start = time.monotonic()   # CLOCK_MONOTONIC: one clock for every process on this machine
    procs = [ctx.Process(target=_worker, daemon=True, name=f"modelloop-trial-worker-{i}",
                         args=(i, storage, study.study_name, run_trial, seed, group, budget, n_trials,
                               spent_before, start, barrier, asking, results))
             for i in range(workers)]
    n_done = len(finished(study))
    take = message_taker(on_trial, progress, spent_before, start)

    try:
        for p in procs:
            p.start()
        while True:
            try:
                kind, payload = results.get(timeout=0.2)
            except queue_module.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            n_done = take(kind, payload, n_done)
        # what a worker told after the parent's last look
        while True:
            try:
                kind, payload = results.get_nowait()
            except queue_module.Empty:
                break
            n_done = take(kind, payload, n_done)
    except BaseException:
        _stop(procs)
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            abandon(study, stale)
        raise
    finally:
        for p in procs:
            if p.pid is not None:
                p.join(timeout=5)


def _stop(procs: list[Any]) -> None:
    """SIGTERM, then SIGKILL what is still alive after a short grace."""
    for p in procs:
        if p.pid is not None and p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is None:
            continue  # never started
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=3)


def _exit_with_search() -> None:
    """Kill this worker when the search that started it dies, by any signal. Its OS parent is the fork
    server, so ``PR_SET_PDEATHSIG`` would wait for the wrong process; ``parent_process().sentinel`` is
    the search's end of a pipe, readable once the search is gone."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="modelloop-search-watch", daemon=True).start()



def message_taker(on_trial: Callable[[Any], Any] | None, progress: Callable[[int, float], None] | None,
                  spent_before: float, start: float) -> Callable[[str, Any, int], int]:
    """What the parent does with one message of a search worker (a forked process here, a Ray task in
    ``ray_search``): a finished trial is logged and counted, an error is raised. The error was pickled by
    our own worker (``_worker``) and came through our own queue, never from a file or a client."""
    def take(kind: str, payload: Any, n_done: int) -> int:
        if kind == "error":
            raise pickle.loads(payload)
        if on_trial is not None:
            on_trial(payload)
        if progress is not None:
            progress(n_done + 1, spent_before + time.monotonic() - start)
        return n_done + 1
    return take


def _worker(index: int, storage: str, study_name: str, run_trial: Callable[..., Any], seed: int, group: bool,
            budget: float | None, n_trials: int | None, spent_before: float, start: float,
            barrier: Any, asking: Any, results: Any, process: str | None = None) -> None:
    """One worker: load the study, wait for the peers, then ask / run / tell until the budget ends.
    ``process``: what each trial's ``PROCESS_KEY`` says (default ``host:pid``)."""
    _exit_with_search()  # a search killed with SIGKILL leaves no worker telling trials to its next run
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Fixed parameter .* is out of range.*")
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_for(storage))
        study.sampler = tpe_sampler(seed + len(study.trials) + 7919 * (index + 1), group=group, constant_liar=True)
        try:
            barrier.wait(timeout=_START_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # a peer did not come up: run without it
        deadline = start + budget - spent_before if budget is not None else math.inf
        late = False  # this worker ran a trial past the deadline: one at most (it may have failed)
        while True:
            with asking:  # one asker at a time: SQLite has no row lock, so two could pop one queued trial
                trials = study.get_trials(deepcopy=False)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if n_trials is not None and len(finished(study)) + running >= n_trials:
                    break
                # past the deadline a trial runs only while the study has no model and none is on its way
                if (now := time.monotonic()) >= deadline:
                    if late or running or any(t.state == TrialState.COMPLETE for t in trials):
                        # the spent time as of this check (``search.search_loop`` does the same)
                        study.set_user_attr(SPENT_KEY, max(spent_before + now - start,
                                                           float(study.user_attrs.get(SPENT_KEY) or 0.0)))
                        break
                    late = True
                trial = study.ask()
                trial.set_user_attr(WORKER_KEY, index)
                trial.set_user_attr(PROCESS_KEY, process or f"{socket.gethostname()}:{os.getpid()}")
            try:
                result = run_trial(study, trial, deadline)
            except KeyboardInterrupt:
                abandon(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
                return
            study.set_user_attr(SPENT_KEY, max(spent_before + time.monotonic() - start,
                                               float(study.user_attrs.get(SPENT_KEY) or 0.0)))
            results.put(("trial", result))
    except KeyboardInterrupt:
        return
    except Exception as exc:  # the parent raises it (a ModelloopError: the user's data or config)
        barrier.abort()
        try:
            payload = pickle.dumps(exc)
        except Exception:
            payload = pickle.dumps(RuntimeError(f"search worker {index} (pid {os.getpid()}): "
                                                f"{type(exc).__name__}: {exc}"))
        results.put(("error", payload))
