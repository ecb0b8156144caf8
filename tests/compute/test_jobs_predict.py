"""Demand prediction from finished jobs: the figures, ``jobs list`` showing them, and the worker's
backfill deciding by them."""

from __future__ import annotations

import time

import pytest
from jobs_toy import LAUNCHER, make_project, sleep_job

from modelloop.compute import ComputeConfig, Resources
from modelloop.compute.engines import LocalEngine
from modelloop.compute.jobs import list_jobs
from modelloop.compute.predict import predict_demand
from modelloop.compute.queue import FINISHED, JobQueue
from modelloop.compute.worker import Worker
from modelloop.project import Project


def _done(i: int, verb: str, seconds: float, rows: int | None = None, project: str = "p", memory: int = 100):
    return {"id": i, "state": "succeeded", "project": project, "features": {"verb": verb, "rows": rows},
            "usage": {"seconds": seconds, "peak_memory": memory}}


def test_prediction_is_the_median_then_a_power_law_of_the_dataset_size():
    assert predict_demand({"verb": "train"}, "p", []) == {"seconds": None, "peak_memory": None, "based_on": 0}
    hist = [_done(1, "train", 10), _done(2, "train", 30), _done(3, "train", 20), _done(4, "retrain", 500)]
    assert predict_demand({"verb": "train"}, "p", hist) == {"seconds": 20, "peak_memory": 100, "based_on": 3}
    # seconds = 0.01 * rows: fitted on log-log, predicted at a size never seen
    sized = [_done(i, "train", 0.01 * r, rows=r, memory=1000 * r) for i, r in enumerate((100, 1000, 10000))]
    got = predict_demand({"verb": "train", "rows": 100000}, "p", sized)
    assert got["seconds"] == pytest.approx(1000, rel=1e-6) and got["peak_memory"] == pytest.approx(1e8, rel=1e-6)
    # the project's own history first, any project's when it has none
    other = [_done(9, "train", 99, project="q")]
    assert predict_demand({"verb": "train"}, "p", hist + other)["seconds"] == 20
    assert predict_demand({"verb": "train"}, "new", hist + other)["seconds"] == 25   # median of p and q: 10 20 30 99
    assert predict_demand({"verb": "train"}, "new", other)["seconds"] == 99


def _until_done(w: Worker, queue: JobQueue, ids: list[int], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while any(queue.get(i)["state"] not in FINISHED for i in ids):
        assert time.monotonic() < end
        w.step()
        time.sleep(0.03)


def test_finished_jobs_predict_the_next_one_and_backfill_follows_the_prediction(tmp_path):
    """History: a 'short' job (0.1 s) and a 'long' one (1 s). Then, on 2 CPUs with a long job running, a
    2-CPU job waits for it; the short job behind it starts at once (it ends before the long one), a
    second long job does not (it would delay the 2-CPU job)."""
    make_project(tmp_path, {"preemption": False})
    ws = Project.load(tmp_path / "modelloop.yaml").workspace
    queue = JobQueue(ws.catalog)
    m = tmp_path / "m"
    w = Worker(queue, ComputeConfig(poll_seconds=0.05, preemption=False, aging_per_minute=0),
               Resources(cpus=2, memory=2**30), LocalEngine(LAUNCHER))
    first = [sleep_job(queue, tmp_path, 0.1, m, verb="short"), sleep_job(queue, tmp_path, 1.0, m, verb="long")]
    _until_done(w, queue, first)
    listed = {j["id"]: j for j in list_jobs(ws)}
    running = sleep_job(queue, tmp_path, 1.0, m, verb="long")
    w.step()
    assert queue.get(running)["state"] == "running"
    head = sleep_job(queue, tmp_path, 0.1, m, cpus=2, priority=80, verb="wide")
    late = sleep_job(queue, tmp_path, 1.0, m, verb="long")
    short = sleep_job(queue, tmp_path, 0.1, m, verb="short")
    predicted = {j["id"]: j["predicted"] for j in list_jobs(ws)}
    assert predicted[late]["based_on"] == 1 and 0.9 <= predicted[late]["seconds"] <= 3.0
    assert predicted[short]["seconds"] < 0.9 and predicted[head]["seconds"] is None
    assert listed[first[0]]["usage"]["seconds"] > 0 and listed[first[0]]["usage"]["peak_memory"] > 0
    w.step()
    assert queue.get(short)["state"] == "running"                         # backfilled
    assert queue.get(late)["state"] == "queued" and queue.get(head)["state"] == "queued"
    _until_done(w, queue, [running, head, late, short])
    assert queue.get(late)["started_at"] >= queue.get(head)["started_at"]
