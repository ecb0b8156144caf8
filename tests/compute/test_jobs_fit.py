"""A job that can never fit the pool (or the Ray cluster) is refused at submit naming what it asked and
what there is; a family's GPU default falls back to CPU on a pool without GPUs, said in the job's
``notes``; a queued job whose worker's pool can no longer run it says so in ``jobs list``."""

from __future__ import annotations

import json
import re
import sys

import pytest
import yaml
from clirun import cli
from jobs_toy import make_project, ray_head

from modelloop.catalog import Catalog
from modelloop.compute import ComputeConfig, Resources
from modelloop.compute.engines import LocalEngine
from modelloop.compute.queue import JobQueue
from modelloop.compute.worker import Worker


def _text_project(root, compute: dict, train: dict | None = None) -> None:
    make_project(root, compute)
    raw = yaml.safe_load((root / "modelloop.yaml").read_text())
    raw.update(task="text_classification", data={"source": "data.csv", "target": "y", "text": "message"},
               train=train or {})
    (root / "modelloop.yaml").write_text(yaml.safe_dump(raw))


def _submit(root, capsys, *args: str, verb: str = "train") -> dict:
    code, out, err = cli(["jobs", "submit", "--json", *args, "--", verb], capsys, root)
    assert code == 0, err
    answer = json.loads(out)
    code, out, err = cli(["jobs", "show", str(answer["id"]), "--json"], capsys, root)
    return {**json.loads(out), "submit_notes": answer["notes"]}


@pytest.mark.parametrize(("compute", "where"), [
    ({"engine": "local"}, "the pool"),
    ({"engine": "ray"}, "the local Ray"),        # address auto: the Ray it starts gets the pool's figures
])
def test_a_gpu_default_falls_back_to_cpu_and_a_gpu_ask_is_refused_without_gpus(tmp_path, capsys, compute, where):
    _text_project(tmp_path, {**compute, "pool": {"cpus": 2, "gpus": 0, "memory": "8GiB"}})
    job = _submit(tmp_path, capsys)
    assert job["resources"]["gpus"] == 0 and job["state"] == "queued"
    assert job["notes"] == job["submit_notes"] == [f"the text family's default of 1 GPU fell back to CPU: {where} "
                                                   "has no GPU"]
    code, out, _ = cli(["jobs", "submit", "--", "train"], capsys, tmp_path)
    assert code == 0 and "note: the text family's default of 1 GPU fell back to CPU" in out
    code, _, err = cli(["jobs", "submit", "--gpus", "1", "--", "status"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"more than {where} has (gpus: 1 asked, {where} has 0); {where} has 2 CPUs, 0 GPUs, 8.0 GiB in all" in err
    code, _, err = cli(["jobs", "submit", "--cpus", "3", "--", "status"], capsys, tmp_path)
    assert code == 2 and f"cpus: 3 asked, {where} has 2" in err
    assert len(json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1])) == 2


def test_on_ray_with_address_auto_a_job_is_checked_against_rays_memory_not_the_machines(tmp_path, capsys):
    """compute.pool.memory left out: the local Ray that auto starts has Ray's own memory figure (the
    memory available now less its object store), so a job asking nearly all the machine's RAM is refused
    at submit, naming that figure, instead of queueing for a pool that can never hold it."""
    import os

    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    make_project(tmp_path, {"engine": "ray", "pool": {"cpus": 2, "gpus": 0}})
    code, _, err = cli(["jobs", "submit", "--memory", str(int(machine * 0.95)), "--", "status"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    has = re.search(rf"memory: {int(machine * 0.95)} asked, the local Ray has (\d+)\)", err)
    assert has is not None and int(has.group(1)) < 0.9 * machine, err
    assert _submit(tmp_path, capsys, "--memory", "1GiB", verb="status")["state"] == "queued"


def test_data_parallel_ranks_fall_back_to_cpus_on_a_pool_without_gpus(tmp_path, capsys):
    _text_project(tmp_path, {"pool": {"cpus": 2, "gpus": 0, "memory": "8GiB"}}, {"ddp_processes": 2})
    job = _submit(tmp_path, capsys)
    assert (job["resources"]["cpus"], job["resources"]["gpus"]) == (2.0, 0)
    assert "train.ddp_processes: 2 ranks train on CPUs (gloo): the pool has no GPU" in job["notes"]
    _text_project(tmp_path, {"pool": {"cpus": 2, "gpus": 2, "memory": "8GiB"}}, {"ddp_processes": 2})
    job = _submit(tmp_path, capsys)                      # GPUs there: one a rank, nothing to note
    assert job["resources"]["gpus"] == 2 and job["notes"] == []


def test_a_ray_cluster_that_does_not_answer_queues_the_job_unchecked_and_says_so(tmp_path, capsys):
    from servers import free_port

    address = f"127.0.0.1:{free_port()}"
    _text_project(tmp_path, {"engine": "ray", "address": address})
    job = _submit(tmp_path, capsys, "--gpus", "1")
    assert job["resources"]["gpus"] == 1
    assert job["notes"] == [f"not checked against the cluster's resources: no Ray cluster answers at {address} now"]


def test_a_queued_job_the_pool_shrank_under_is_listed_with_the_reason(tmp_path, capsys):
    make_project(tmp_path, {"pool": {"cpus": 2, "gpus": 2, "memory": "4GiB"}})
    job_id = _submit(tmp_path, capsys, "--gpus", "2", verb="status")["id"]
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / '.modelloop' / 'catalog.db'}"))
    # the real worker loop on a pool shrunk to 1 GPU (compute.pool.gpus lowered, or a GPU gone)
    worker = Worker(queue, ComputeConfig(poll_seconds=0.05), Resources(cpus=2, gpus=1, memory=4 * 2**30),
                    LocalEngine(("true",)))
    for _ in range(3):
        worker.step()
    listed = json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1])
    assert listed[0]["state"] == "queued"
    assert listed[0]["cannot_fit"] == f"gpus: 2 asked, worker {worker.name}'s pool has 1"
    assert [e["state"] for e in listed[0]["history"]] == ["queued", "queued"]     # noted once, not each round
    code, out, _ = cli(["jobs", "list"], capsys, tmp_path)
    assert "queued*" in out and f"* job {job_id} cannot start: gpus: 2 asked" in out.replace("\n", " ")
    worker.pool = Resources(cpus=2, gpus=2, memory=4 * 2**30)          # the GPU is back: it runs
    worker.step()
    shown = json.loads(cli(["jobs", "show", str(job_id), "--json"], capsys, tmp_path)[1])
    assert shown["state"] == "running" and shown["cannot_fit"] is None
    assert shown["history"][-1]["reason"] == f"started on {worker.name}"
    worker.shutdown()


def test_a_worker_restarted_with_a_bigger_pool_says_a_noted_job_fits_again_before_it_starts(tmp_path, capsys):
    """The worker that noted "cannot fit" is gone; the next one, with a pool the job fits but whose GPU
    is busy now, replaces the note at once instead of leaving it until the job starts."""
    make_project(tmp_path, {"pool": {"cpus": 2, "gpus": 2, "memory": "4GiB"}})
    busy = _submit(tmp_path, capsys, "--gpus", "1", verb="status")["id"]
    job_id = _submit(tmp_path, capsys, "--gpus", "2", verb="status")["id"]
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / '.modelloop' / 'catalog.db'}"))
    sleeper = LocalEngine((sys.executable, "-c", "import time; time.sleep(60)"))
    cfg = ComputeConfig(poll_seconds=0.05, grace_seconds=1)
    small = Worker(queue, cfg, Resources(cpus=2, gpus=1, memory=4 * 2**30), sleeper, name="small:1")
    small.step()
    small.shutdown()                       # the busy job goes back to the queue, the note stays
    listed = {j["id"]: j for j in json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1])}
    assert listed[job_id]["cannot_fit"] == "gpus: 2 asked, worker small:1's pool has 1"
    big = Worker(queue, cfg, Resources(cpus=2, gpus=2, memory=4 * 2**30), sleeper, name="big:1")
    big.step()                             # the older busy job takes a GPU: the 2-GPU job waits
    try:
        listed = {j["id"]: j for j in json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1])}
        assert listed[busy]["state"] == "running" and listed[job_id]["state"] == "queued"
        assert listed[job_id]["cannot_fit"] is None
        assert listed[job_id]["history"][-1]["reason"] == "fits worker big:1's pool again"
    finally:
        big.shutdown()


@pytest.mark.slow
def test_a_real_ray_cluster_without_gpus_refuses_a_gpu_job_and_runs_the_default_on_cpu(tmp_path, capsys,
                                                                                      monkeypatch):
    """Slow (a real Ray head: 15-30 s to start here); the same decisions on a known pool are
    test_a_gpu_default_falls_back_to_cpu_and_a_gpu_ask_is_refused_without_gpus in the default run."""
    pytest.importorskip("ray")
    import ray

    with ray_head(cpus=1) as (address, env):
        monkeypatch.setenv("HOME", env["HOME"])
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        _text_project(tmp_path, {"engine": "ray", "address": address})
        where = f"the Ray cluster at {address}"
        job = _submit(tmp_path, capsys)
        assert job["resources"]["gpus"] == 0 and job["resources"]["cpus"] == 1.0
        assert job["notes"] == [f"the text family's default of 1 GPU fell back to CPU: {where} has no GPU"]
        code, _, err = cli(["jobs", "submit", "--gpus", "1", "--", "status"], capsys, tmp_path)
        assert code == 2 and f"gpus: 1 asked, {where} has 0" in err and "add nodes" in err, err
        assert not ray.is_initialized()                  # submit joined, read and left
