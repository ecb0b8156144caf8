"""``modelloop jobs list`` / ``show`` in the terminal: a running job's progress, and ``--watch``."""

from __future__ import annotations

import io
import json
import threading

import pytest
from clirun import cli
from rich.console import Console
from jobs_toy import make_project

from modelloop.compute.jobs import cancel_job
from modelloop.compute.show import progress_text, watch_jobs
from modelloop.config import load_config
from modelloop.project import Project


def _job(state: str, ran: float | None, predicted: float | None) -> dict:
    return {"state": state, "running_seconds": ran, "predicted": {"seconds": predicted}}


@pytest.mark.parametrize(("job", "text"), [
    (_job("running", 30, 60), "█████░░░░░ 50% ~30s left"),
    (_job("running", 90, 60), "██████████ 30s over"),
    (_job("running", 30, None), "30s run"),         # nothing like it finished yet: no bar to draw
    (_job("queued", None, 60), ""),
    (_job("succeeded", None, 60), ""),
])
def test_a_running_jobs_progress_against_its_predicted_duration(job, text):
    assert progress_text(job) == text


def test_jobs_list_watch_redraws_until_nothing_waits(tmp_path, capsys):
    make_project(tmp_path)
    code, out, err = cli(["jobs", "submit", "--json", "--", "status"], capsys, tmp_path)
    assert code == 0, err
    job_id = json.loads(out)["id"]
    # the watch keeps redrawing while the job waits; cancelling it (from another process in real use) ends it
    ws = Project(load_config(tmp_path / "modelloop.yaml")).workspace
    timer = threading.Timer(0.8, cancel_job, (ws, job_id))
    timer.start()
    code, out, err = cli(["jobs", "list", "--watch", "0.2"], capsys, tmp_path)
    timer.join()
    assert code == 0, err
    assert "cancelled" in out           # returned once nothing waits; a pipe gets the last table only


def test_watch_reads_the_queue_again_until_no_job_is_queued_running_or_preempted():
    states = iter(["queued", "running", "preempted", "running", "succeeded"])
    reads: list[str] = []

    def fetch() -> list[dict]:
        reads.append(next(states))
        return [{**_job(reads[-1], 5 if reads[-1] == "running" else None, 10), "id": 1, "priority": 50,
                 "command": ["train"], "resources": {"cpus": 1, "gpus": 0}, "wait_seconds": 1, "attempts": 1}]

    jobs = watch_jobs(fetch, Console(file=io.StringIO()), every=0.01)
    assert reads == ["queued", "running", "preempted", "running", "succeeded"] and jobs[0]["state"] == "succeeded"
