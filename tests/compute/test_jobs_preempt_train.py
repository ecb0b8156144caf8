"""A real ``modelloop train`` search preempted by a higher-priority job: stopped with SIGTERM, queued
again, and on its next start it resumes with the trials it had finished."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest
import yaml
from jobs_toy import make_project, states
from toy import make_table

from modelloop.compute.jobs import CommandInfo, submit_job
from modelloop.compute.queue import FINISHED, JobQueue
from modelloop.compute.resources import machine_pool
from modelloop.compute.worker import Worker
from modelloop.project import Project

COMMANDS = {"train": CommandInfo(True, True), "status": CommandInfo(True, True)}


def _complete_trials(url: str) -> int:
    try:
        names = optuna.get_all_study_names(storage=url)
    except Exception:  # the job has not created the store yet
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE
               for n in names for t in optuna.load_study(study_name=n, storage=url).get_trials(deepcopy=False))


@pytest.mark.slow
def test_a_preempted_search_resumes_with_its_trials_kept(tmp_path: Path):
    """Slow (25-30 s: two start-ups of a real train process and a model registration). In the default run,
    test_jobs_worker's test_a_high_job_preempts_a_low_one_which_then_runs_again covers the preemption
    (SIGTERM, preempted, queued, started again) and test_tune's SIGKILL and KeyboardInterrupt tests cover
    a search resuming with its finished trials."""
    config = make_project(tmp_path, {"pool": {"cpus": 1, "gpus": 0, "memory": "4GiB"}, "grace_seconds": 30,
                                     "poll_seconds": 0.1})
    raw = yaml.safe_load(config.read_text())
    raw["train"] = {"cv_folds": 2, "families": ["linear", "lightgbm"], "ensemble": False, "tune_threshold": False}
    config.write_text(yaml.safe_dump(raw))
    make_table(300).to_csv(tmp_path / "data.csv", index=False)
    project = Project.load(config)
    project.ingest()
    ws = project.workspace
    queue = JobQueue(ws.catalog)
    train = submit_job(ws, ["train", "--budget", "3", "--trials", "60"], COMMANDS, config=str(config),
                       priority="low")["id"]
    worker = Worker(queue, ws.config.compute, machine_pool(ws.config.compute.pool))
    optuna_url = ws.optuna_url
    end = time.monotonic() + 90
    while _complete_trials(optuna_url) < 2:
        assert time.monotonic() < end and queue.get(train)["state"] in ("queued", "running"), \
            Path(queue.get(train)["logs"]).read_text()
        worker.step()
        time.sleep(0.1)
    urgent = submit_job(ws, ["status"], COMMANDS, config=str(config), priority="high")["id"]
    while any(queue.get(i)["state"] not in FINISHED for i in (train, urgent)):
        assert time.monotonic() < end, [queue.get(i)["state"] for i in (train, urgent)]
        worker.step()
        time.sleep(0.1)
    log = Path(queue.get(train)["logs"]).read_text()
    assert states(queue, train) == ["queued", "running", "preempted", "running", "succeeded"], log
    assert states(queue, urgent) == ["queued", "running", "succeeded"]
    assert queue.get(train)["attempts"] == 2
    answer = json.loads(Path(queue.get(train)["logs"]).with_suffix(".out").read_text().splitlines()[-1])
    assert answer["resumed_trials"] >= 2          # the first attempt's finished trials were kept
    assert queue.get(train)["result"]["model"] == {"name": "jobsproj", "version": 1}
    # the preempted attempt's ended after the urgent job started: it was stopped, not finished
    hist = queue.history([train, urgent])
    assert hist[train][2]["at"] <= hist[urgent][1]["at"]
