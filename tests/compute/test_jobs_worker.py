"""``modelloop worker``'s loop with real processes: preemption, GPUs, cancel, a worker killed mid-job,
two workers on one PostgreSQL queue. The jobs are a sleeping program (jobs_sleeper.py) launched in place
of modelloop's runner; test_jobs_preempt_train.py runs a real ``modelloop train``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jobs_toy import LAUNCHER, sleep_job, states, wait_for

from modelloop.catalog import Catalog
from modelloop.compute import ComputeConfig, Resources
from modelloop.compute.engines import LocalEngine
from modelloop.compute.queue import FINISHED, JobQueue
from modelloop.compute.worker import Worker

CFG = ComputeConfig(poll_seconds=0.05, grace_seconds=5, aging_per_minute=0)


def _worker(queue: JobQueue, pool: Resources, name: str | None = None, **cfg) -> Worker:
    return Worker(queue, CFG.model_copy(update=cfg), pool, LocalEngine(LAUNCHER), name=name)


def _until_done(worker: Worker, queue: JobQueue, ids: list[int], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while any(queue.get(i)["state"] not in FINISHED for i in ids):
        assert time.monotonic() < end, [(i, queue.get(i)["state"]) for i in ids]
        worker.step()
        time.sleep(0.03)


def _lines(marker: Path) -> list[str]:
    return marker.read_text().split("\n")[:-1] if marker.exists() else []


def test_a_high_job_preempts_a_low_one_which_then_runs_again(tmp_path):
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    marker = tmp_path / "done"
    w = _worker(queue, Resources(cpus=1, gpus=0, memory=2**30))
    low = sleep_job(queue, tmp_path, 1.0, marker, priority=20)
    wait_for(lambda: (w.step(), queue.get(low)["pid"])[1], what="the low job to start")
    high = sleep_job(queue, tmp_path, 0.2, marker, priority=80)
    _until_done(w, queue, [low, high])
    assert states(queue, low) == ["queued", "running", "preempted", "running", "succeeded"]
    assert states(queue, high) == ["queued", "running", "succeeded"]
    assert [line.split()[0] for line in _lines(marker)] == [str(high), str(low)]   # low's first run never ended
    assert queue.get(low)["attempts"] == 2
    preempted = queue.history([low])[low][2]
    assert "higher-priority" in preempted["reason"]


def test_gpus_are_handed_out_through_cuda_visible_devices(tmp_path):
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    marker = tmp_path / "done"
    w = _worker(queue, Resources(cpus=4, gpus=2, memory=2**30))
    a = sleep_job(queue, tmp_path, 0.3, marker, gpus=1)
    b = sleep_job(queue, tmp_path, 0.3, marker, gpus=1)
    both = sleep_job(queue, tmp_path, 0.1, marker, gpus=2)
    cpu = sleep_job(queue, tmp_path, 0.1, marker)
    _until_done(w, queue, [a, b, both, cpu])
    seen = dict(line.split(" ", 1) for line in _lines(marker))
    assert {seen[str(a)], seen[str(b)]} == {"0", "1"}
    assert seen[str(both)] == "0,1" and seen[str(cpu)] == ""
    # a and b ran side by side; the 2-GPU job only after both ended (gang)
    assert queue.get(both)["started_at"] >= max(queue.get(a)["ended_at"], queue.get(b)["ended_at"])


def test_cancel_of_a_running_job_is_sigterm_then_sigkill_after_the_grace(tmp_path):
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    w = _worker(queue, Resources(cpus=1, memory=2**30), grace_seconds=0.5)
    stubborn = sleep_job(queue, tmp_path, 60, tmp_path / "done", ignore_term=True)
    wait_for(lambda: (w.step(), queue.get(stubborn)["pid"])[1], what="the job to start")
    time.sleep(0.3)        # let it install its SIGTERM handler
    assert queue.cancel(stubborn) == "running"
    t0 = time.monotonic()
    _until_done(w, queue, [stubborn], timeout=10)
    assert 0.4 < time.monotonic() - t0 < 5
    job = queue.get(stubborn)
    assert job["state"] == "cancelled" and job["exit_code"] == -signal.SIGKILL
    assert not (tmp_path / "done").exists()


_WORKER_SCRIPT = """
import sys
from modelloop.catalog import Catalog
from modelloop.compute import ComputeConfig, Resources
from modelloop.compute.engines import LocalEngine
from modelloop.compute.queue import JobQueue
from modelloop.compute.worker import Worker
url, launcher = sys.argv[1], sys.argv[2:]
Worker(JobQueue(Catalog(url)), ComputeConfig(poll_seconds=0.05), Resources(cpus=2, memory=2**30),
       LocalEngine(launcher)).run()
"""


def test_a_worker_killed_mid_job_loses_nothing_and_the_job_finishes_once(tmp_path):
    """kill -9 of the worker (the scheduler) while its job runs: the next worker re-queues the job (its
    attempt counted), the orphan never finishes it, and it runs to the end once."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    queue = JobQueue(Catalog(url))
    marker = tmp_path / "done"
    job = sleep_job(queue, tmp_path, 1.5, marker)
    waiting = sleep_job(queue, tmp_path, 0.1, marker, cpus=2)      # still queued when the worker dies
    proc = subprocess.Popen([sys.executable, "-c", _WORKER_SCRIPT, url, *LAUNCHER], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: queue.get(job)["pid"], what="the first worker to start the job")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    orphan = queue.get(job)["pid"]
    w = _worker(queue, Resources(cpus=2, memory=2**30))
    _until_done(w, queue, [job, waiting])
    assert states(queue, job) == ["queued", "running", "queued", "running", "succeeded"]
    assert "died" in queue.history([job])[job][2]["reason"]
    assert queue.get(job)["attempts"] == 2 and queue.get(waiting)["attempts"] == 1
    assert sorted(line.split()[0] for line in _lines(marker)) == sorted([str(job), str(waiting)])
    time.sleep(0.3)
    assert len(_lines(marker)) == 2
    assert wait_for(lambda: not _alive(orphan), timeout=5, what="the orphan to be gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_on_one_postgresql_queue_run_each_job_once(pg_url, tmp_path):
    queue = JobQueue(Catalog(pg_url))
    marker = tmp_path / "done"
    ids = [sleep_job(queue, tmp_path, 0.05, marker) for _ in range(8)]
    workers = [_worker(JobQueue(Catalog(pg_url)), Resources(cpus=2, memory=2**30), name=f"{n}:w")
               for n in ("host-a", "host-b")]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, kwargs={"until": stop.is_set}) for w in workers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(queue.get(i)["state"] in FINISHED for i in ids), timeout=30, what="every job")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sorted(int(line.split()[0]) for line in _lines(marker)) == ids
    rows = queue.rows()
    assert all(r["state"] == "succeeded" and r["attempts"] == 1 for r in rows)
    assert {r["worker"] for r in rows} == {"host-a:w", "host-b:w"}


def test_a_stopped_worker_hands_its_running_jobs_back_to_the_queue(tmp_path):
    """Ctrl-C or SIGTERM of ``modelloop worker`` (Worker.run's shutdown): its jobs get SIGTERM and go back
    to the queue, their attempt counted, for the next worker."""
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    w = _worker(queue, Resources(cpus=1, memory=2**30))
    job = sleep_job(queue, tmp_path, 30, tmp_path / "done")
    wait_for(lambda: (w.step(), queue.get(job)["pid"])[1], what="the job to start")
    w.shutdown()
    assert states(queue, job) == ["queued", "running", "queued"]
    assert "was stopped" in queue.history([job])[job][2]["reason"] and queue.get(job)["attempts"] == 1
    assert not w.handles
