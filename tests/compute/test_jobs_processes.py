"""A training job asks the pool for the processes its config starts: ``train.parallel`` search workers and
the ``train.ddp_processes`` ranks of a text, image or generative fine-tune (one CPU each, one GPU each on CUDA/nccl;
on the Ray engine the ranks are Ray Train workers asking the cluster themselves).
Submitted through the CLI, run by the real worker loop: the job holds what it asked for while it runs."""

from __future__ import annotations

import json
import sys
import time

import pytest
import yaml
from clirun import cli
from jobs_toy import make_project

from modelloop.catalog import Catalog
from modelloop.compute import ComputeConfig, Resources
from modelloop.compute.engines import LocalEngine
from modelloop.compute.queue import FINISHED, JobQueue
from modelloop.compute.worker import Worker

# stands in for modelloop's runner: records the job, its GPUs and when it ran, then sleeps a little
RECORDER = (sys.executable, "-c",
            "import os, sys, time; t = time.time(); time.sleep(0.4); "
            "open(os.environ['RECORD'], 'a').write(f\"{os.environ['MODELLOOP_JOB_ID']} "
            "{os.environ['CUDA_VISIBLE_DEVICES'] or '-'} {t} {time.time()}\\n\")")


def _text_project(root, train: dict, model: dict | None = None, pool: dict | None = None,
                  compute: dict | None = None) -> None:
    make_project(root, {"pool": {"cpus": 2, "gpus": 2, "memory": "8GiB", **(pool or {})}, **(compute or {})})
    config = root / "modelloop.yaml"
    raw = yaml.safe_load(config.read_text())
    raw.update(task="text_classification", data={"source": "data.csv", "target": "y", "text": "message"},
               train=train, model=model or {})
    config.write_text(yaml.safe_dump(raw))


def _submit(root, capsys, *args: str, verb: str = "train") -> dict:
    code, out, err = cli(["jobs", "submit", "--json", *args, "--", verb], capsys, root)
    assert code == 0, err
    code, out, err = cli(["jobs", "show", str(json.loads(out)["id"]), "--json"], capsys, root)
    return json.loads(out)


def test_a_ray_cluster_job_asks_a_cpu_for_each_process(tmp_path, capsys):
    """On the Ray engine a family's "every CPU" is 1 at submit (the cluster is not asked then): the
    processes the config starts are what the job asks, less those Ray places itself."""
    # a text fine-tune's ranks are Ray Train workers asking the cluster for their own CPU and GPU
    # (training/distributed.py): the job holds 1 CPU and none of their GPUs, on CPUs or on GPUs
    for model in ({"device": "cpu"}, {}):
        _text_project(tmp_path, {"ddp_processes": 2}, model, pool={"cpus": 4}, compute={"engine": "ray"})
        job = _submit(tmp_path, capsys)
        assert (job["resources"]["cpus"], job["resources"]["gpus"]) == (1.0, 0), model
        assert any("2 ranks run as Ray Train workers" in n for n in job["notes"]), job
    assert _submit(tmp_path, capsys, "--cpus", "2")["resources"]["cpus"] == 2.0      # --cpus wins
    assert _submit(tmp_path, capsys, verb="status")["resources"]["cpus"] == 1.0      # not training
    # train.parallel: 2 search workers are Ray tasks asking the cluster for their own CPU: the job
    # (their parent) holds 1, or they could find none to start on; on the local engine it holds 2
    for engine, cpus in (("ray", 1.0), ("local", 2.0)):
        make_project(tmp_path, {"engine": engine, "pool": {"cpus": 2, "gpus": 0, "memory": "4GiB"}})
        raw = yaml.safe_load((tmp_path / "modelloop.yaml").read_text())
        (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump({**raw, "task": "regression",
                                                                 "train": {"parallel": 2}}))
        assert _submit(tmp_path, capsys)["resources"]["cpus"] == cpus, engine


def test_a_data_parallel_job_on_gpus_holds_a_gpu_a_rank_in_the_real_worker(tmp_path, capsys, monkeypatch):
    _text_project(tmp_path, {"ddp_processes": 2}, pool={"cpus": 3})
    ddp = _submit(tmp_path, capsys, "--cpus", "2")
    assert ddp["resources"]["gpus"] == 2 and ddp["resources"]["cpus"] == 2.0
    other = _submit(tmp_path, capsys, "--gpus", "1", verb="status")
    assert _submit(tmp_path, capsys, "--gpus", "0")["resources"]["gpus"] == 0     # --gpus 0: on CPUs (gloo)
    cli(["jobs", "cancel", "3"], capsys, tmp_path)

    # the real worker loop on the 3-CPU, 2-GPU pool: CPUs would let both run at once, GPUs do not
    record = tmp_path / "record"
    monkeypatch.setenv("RECORD", str(record))
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / '.modelloop' / 'catalog.db'}"))
    worker = Worker(queue, ComputeConfig(poll_seconds=0.05, aging_per_minute=0),
                    Resources(cpus=3, gpus=2, memory=8 * 2**30), LocalEngine(RECORDER))
    ids = [ddp["id"], other["id"]]
    end = time.monotonic() + 30
    while any(queue.get(i)["state"] not in FINISHED for i in ids):
        assert time.monotonic() < end, [(i, queue.get(i)["state"]) for i in ids]
        worker.step()
        time.sleep(0.03)
    ran = {int(j): (gpus, float(a), float(b)) for j, gpus, a, b in
           (line.split() for line in record.read_text().splitlines())}
    assert ran[ddp["id"]][0] == "0,1" and ran[other["id"]][0] in {"0", "1"}
    first, second = sorted(ran.values(), key=lambda r: r[1])
    assert second[1] >= first[2], "the 2-rank job and a 1-GPU job ran at once on 2 GPUs"
    code, out, _ = cli(["jobs", "show", str(ddp["id"]), "--json"], capsys, tmp_path)
    shown = json.loads(out)
    assert shown["state"] == "succeeded" and shown["gpus"] == [0, 1]


@pytest.mark.parametrize(("train", "model", "pool", "args", "message"), [
    ({"ddp_processes": 2}, {"device": "cpu"}, {"cpus": 1}, [],
     "train.ddp_processes: 2 processes need 2 cpus, the pool has 1"),
    ({"parallel": 2}, {}, {"cpus": 1, "gpus": 0}, [], "train.parallel: 2 processes need 2 cpus, the pool has 1"),
    ({"ddp_processes": 2}, {"device": "cuda"}, {"gpus": 1}, [],
     "train.ddp_processes: 2 processes on GPUs (nccl, one GPU a process) need 2 gpus, the pool has 1"),
    ({"ddp_processes": 2}, {}, {}, ["--gpus", "1"], "need 2 gpus, --gpus gave 1; give --gpus 2, or --gpus 0"),
])
def test_more_processes_than_the_pool_has_is_exit_2_naming_both(tmp_path, capsys, train, model, pool, args,
                                                                 message):
    _text_project(tmp_path, train, model, pool)
    code, _, err = cli(["jobs", "submit", *args, "--", "train"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1]) == []


def test_a_generative_fine_tune_holds_its_ranks_locally_and_leaves_them_to_ray_train_on_ray(tmp_path, capsys):
    """Local engine: the ranks are the job's processes, a CPU each. Ray engine: they are Ray Train's
    workers asking the cluster for their own CPU and GPU (training/distributed.py), so the job holds 1 CPU
    and no GPU, and says so; model.device: cuda with fewer GPUs than ranks is refused."""
    def project(engine: str, model: dict, gpus: int = 2, cpus: int = 2) -> None:
        _text_project(tmp_path, {"ddp_processes": 2}, {"backbone": "tiny", **model},
                      pool={"gpus": gpus, "cpus": cpus}, compute={"engine": engine})
        raw = yaml.safe_load((tmp_path / "modelloop.yaml").read_text())
        raw.update(task="text_generation", data={"source": "data.csv", "target": "y"})
        (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw))

    project("local", {"device": "cpu"})
    assert (lambda r: (r["cpus"], r["gpus"]))(_submit(tmp_path, capsys)["resources"]) == (2.0, 0)
    project("ray", {}, cpus=3)
    job = _submit(tmp_path, capsys)
    assert (job["resources"]["cpus"], job["resources"]["gpus"]) == (1.0, 0)
    assert any("2 ranks run as Ray Train workers" in n for n in job["notes"]), job
    project("ray", {"device": "cuda"}, gpus=1, cpus=3)
    code, _, err = cli(["jobs", "submit", "--", "train"], capsys, tmp_path)
    assert code == 2 and "2 Ray Train workers on GPUs (one GPU each) need 2 gpus, the local Ray has 1" in err
    project("ray", {})                     # 2 CPUs: the job's one and the 2 workers' would never all start
    code, _, err = cli(["jobs", "submit", "--", "train"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("train.ddp_processes: 2 Ray Train workers (1 CPU each) and the job that starts them (1 CPU) need 3 "
            "cpus, the local Ray has 2; lower train.ddp_processes or raise compute.pool") in err
