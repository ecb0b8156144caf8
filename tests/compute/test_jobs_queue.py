"""The durable queue and ``modelloop jobs``: the JSON contracts, bad input, the catalog migration, and
exactly-once taking of jobs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from clirun import cli
from jobs_toy import make_project, sleep_job

from modelloop.catalog import SCHEMA_VERSION, Catalog, job_events, jobs, meta
from modelloop.compute.queue import JobQueue

JOB_KEYS = {"id", "state", "priority", "attempts", "resources", "command", "history"}


def test_submit_list_show_cancel_through_the_cli(tmp_path, capsys):
    make_project(tmp_path)
    code, out, err = cli(["jobs", "submit", "--json", "--priority", "high", "--gpus", "1", "--memory", "1GiB",
                          "--", "train", "--budget", "60"], capsys, tmp_path)
    assert code == 0, err
    assert json.loads(out)["id"] == 1
    code, out, _ = cli(["jobs", "submit", "--json", "--priority", "7", "--", "status"], capsys, tmp_path)
    assert json.loads(out)["id"] == 2

    code, out, _ = cli(["jobs", "show", "1", "--json"], capsys, tmp_path)
    job = json.loads(out)
    assert JOB_KEYS <= set(job)
    assert job["state"] == "queued" and job["priority"] == 80 and job["attempts"] == 0
    # what was not asked (cpus) is the tabular family's declared need: every CPU of the pool (2)
    assert job["resources"] == {"cpus": 2.0, "gpus": 1, "memory": 2**30, "custom": {}}
    # the worker runs it in the project with its config, and reads the model version from --json
    assert job["command"] == ["train", "--budget", "60", "-c", str((tmp_path / "modelloop.yaml").resolve()),
                              "--json"]
    assert [e["state"] for e in job["history"]] == ["queued"] and job["history"][0]["at"].endswith("Z")

    code, out, _ = cli(["jobs", "list", "--json"], capsys, tmp_path)
    listed = json.loads(out)
    assert listed[1]["resources"] == {"cpus": 1.0, "gpus": 0, "memory": 0, "custom": {}}   # not training: 1 CPU
    assert [j["id"] for j in listed] == [1, 2] and all(JOB_KEYS <= set(j) for j in listed)
    assert listed[1]["priority"] == 7

    code, out, _ = cli(["jobs", "cancel", "2", "--json"], capsys, tmp_path)
    assert code == 0 and json.loads(out)["state"] == "cancelled"
    assert [e["state"] for e in json.loads(out)["history"]] == ["queued", "cancelled"]
    code, out, _ = cli(["jobs", "list"], capsys, tmp_path)       # the table names both
    assert "train" in out and "cancelled" in out and "-c" not in out


def test_jobs_list_json_keeps_text_as_written(tmp_path, capsys):
    """``jobs list --json`` writes a job's Chinese argument as written, as every other ``--json`` does
    (it escaped it to \\u8bc4\\u8bba: ``json.dumps``' default)."""
    make_project(tmp_path)
    code, _, err = cli(["jobs", "submit", "--json", "--", "predict", "--data", "评论.csv"], capsys, tmp_path)
    assert code == 0, err
    code, out, err = cli(["jobs", "list", "--json"], capsys, tmp_path)
    assert code == 0, err
    assert "评论.csv" in out and "\\u8bc4" not in out
    assert json.loads(out)[0]["command"][:3] == ["predict", "--data", "评论.csv"]


@pytest.mark.parametrize("args, message", [
    (["submit", "--gpus", "3", "--", "train"], "more than the pool has (gpus: 3 asked, the pool has 2)"),
    (["submit", "--cpus", "4", "--", "train"], "cpus: 4 asked, the pool has 2"),
    (["submit", "--", "trian"], "unknown command 'trian'; a job runs one of "),
    (["submit", "--", "worker"], "unknown command 'worker'"),
    (["submit", "--priority", "-1", "--", "train"], "--priority: must be high, normal, low or a whole number "
                                                    "from 0 to 100, got '-1'"),
    (["submit", "--priority", "urgent", "--", "train"], "got 'urgent'"),
    (["cancel", "1"], "job 1 has already finished (cancelled)"),
    (["show", "9"], "job 9 does not exist"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    make_project(tmp_path)
    cli(["jobs", "submit", "--", "status"], capsys, tmp_path)
    cli(["jobs", "cancel", "1"], capsys, tmp_path)
    code, out, err = cli(["jobs", *args], capsys, tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    if args[0] == "submit":   # nothing was queued
        assert json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1])[-1]["id"] == 1


def test_unknown_compute_key_is_refused_with_did_you_mean(tmp_path, capsys):
    make_project(tmp_path, {"preemtion": False})
    code, _, err = cli(["jobs", "list"], capsys, tmp_path)
    assert code == 2 and "compute.preemtion: unknown key (did you mean 'preemption'?)" in err


def test_schema_2_catalog_gets_the_job_tables(store_url):
    """A catalog made before the queue opens: the migration adds the tables and its data stays."""
    cat = Catalog(store_url)
    cat.add_decision(name="m", trigger={}, dataset_id=None, champion={}, challenger={}, promoted=False, reason="r")
    with cat.tx() as c:
        job_events.drop(c)
        jobs.drop(c)
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="2"))
    cat.close()
    cat = Catalog(store_url)
    with cat.tx() as c:
        assert c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == \
            str(SCHEMA_VERSION)
    assert len(cat.list_decisions("m")) == 1
    assert JobQueue(cat).submit(project="p", root="/", command=["status"], resources={}, priority=50,
                                submitter="u", features={}, logs_dir="/tmp") == 1


def test_each_job_is_taken_by_one_scheduler(store_url, tmp_path):
    """Four schedulers race for 12 jobs on one queue (row locks on PostgreSQL, conditional updates on
    both): every job is taken exactly once, with one attempt and one 'running' event."""
    queue = JobQueue(Catalog(store_url))
    ids = [sleep_job(queue, tmp_path, 0, tmp_path / "m") for _ in range(12)]
    taken: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def race(name: str) -> None:
        q = JobQueue(Catalog(store_url))
        barrier.wait()
        got = []
        for _ in range(500):
            got += [r["id"] for r in q.schedule(name, lambda rows: {r["id"]: {"gpus": []} for r in rows[:2]})]
            if not q.rows(("queued",)):
                break
        taken[name] = got

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = sorted(i for got in taken.values() for i in got)
    assert every == ids
    rows = queue.rows()
    assert all(r["state"] == "running" and r["attempts"] == 1 for r in rows)
    hist = queue.history(ids)
    assert all([e["state"] for e in hist[i]] == ["queued", "running"] for i in ids)


def test_a_job_runs_through_the_worker_command_and_its_log_and_answer_are_kept(tmp_path, capsys):
    """``modelloop worker`` runs a real ``modelloop status`` job (the runner, its -c and --json), then
    exits when idle; the job's log is there for ``jobs logs``."""
    make_project(tmp_path)
    cli(["jobs", "submit", "--", "status"], capsys, tmp_path)
    code, _, err = cli(["worker", "--idle-exit", "0.2"], capsys, tmp_path)
    assert code == 0, err
    assert "job 1 started" in err and "job 1 succeeded" in err
    job = json.loads(cli(["jobs", "show", "1", "--json"], capsys, tmp_path)[1])
    assert job["state"] == "succeeded" and job["exit_code"] == 0 and job["usage"]["peak_memory"] > 0
    out_file = tmp_path / ".modelloop" / "jobs" / "1.out"
    assert json.loads(out_file.read_text())["project"] == "jobsproj"     # status --json, run in the project
    code, out, _ = cli(["jobs", "logs", "1", "-f"], capsys, tmp_path)
    assert code == 0 and "--- attempt 1 ---" in out


def test_a_lost_job_is_queued_again_failed_after_max_attempts_and_stays_cancelled_if_cancelled(tmp_path):
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    ids = [sleep_job(queue, tmp_path, 0, tmp_path / "m") for _ in range(3)]
    queue.schedule("gone:1", lambda rows: {r["id"]: {"gpus": []} for r in rows})
    assert queue.cancel(ids[2]) == "running"
    rows = {r["id"]: r for r in queue.rows()}
    assert queue.requeue_lost(rows[ids[0]], "worker gone:1 died", max_attempts=3) == "queued"
    assert queue.requeue_lost(rows[ids[1]], "worker gone:1 died", max_attempts=1) == "failed"
    assert queue.requeue_lost(rows[ids[2]], "worker gone:1 died", max_attempts=3) == "cancelled"
    assert [queue.get(i)["state"] for i in ids] == ["queued", "failed", "cancelled"]
    assert "compute.max_attempts reached" in queue.history([ids[1]])[ids[1]][-1]["reason"]
    # the worker's row is gone from them: a second requeue of the same stale row changes nothing
    queue.requeue_lost(rows[ids[0]], "worker gone:1 died", max_attempts=3)
    assert [e["state"] for e in queue.history([ids[0]])[ids[0]]] == ["queued", "running", "queued"]
