"""The text and image families' ``train.ddp_processes`` on ``compute.engine: ray``: their ranks are Ray Train
workers through the same ``run_ranks`` as the generative family's, and what the caller gets is what the
local processes give. Ranks or search tasks a Ray cluster can never place beside the job that starts them
are exit-2 errors naming the cluster's CPUs, not a wait for ever; the config caps ``train.ddp_processes``
at this machine's CPUs only on the local engine.

Fast: the checks on a stand-in for the ``ray`` module (its two figures), the submit-time refusal, the
result's round trip through Ray Train's checkpoint, the deadline's travel, the trial's report. Slow: one
real ``ray start --head`` with 2 CPUs, the tiny BERT fine-tuned in 2 Ray Train workers against 1 local
process."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
import yaml
from clirun import cli
from jobs_toy import make_project

from modelloop.config import parse_config
from modelloop.errors import ConfigError
from modelloop.training import distributed as D
from modelloop.training.ray_search import ray_search_loop

CONFIG = {"name": "x", "data": {"source": "d.csv", "target": "y"}}


class _FakeRay:
    """What the checks read of the ``ray`` module: the cluster's CPUs and the GCS address it joined."""

    def __init__(self, cpus: float, gcs: str = "127.0.0.1:6399"):
        self.cpus, self.gcs, self.shut = cpus, gcs, False

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus}

    def get_runtime_context(self) -> SimpleNamespace:
        return SimpleNamespace(gcs_address=self.gcs)

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture()
def fake_ray(monkeypatch):
    """connect_ray answers with a :class:`_FakeRay` of the CPUs set on it (no Ray started)."""
    import modelloop.compute.ray_engine as engine

    fake = _FakeRay(2)
    monkeypatch.setattr(engine, "connect_ray", lambda address, *a, **k: fake)
    monkeypatch.delenv(engine.JOB_CPUS, raising=False)
    return fake


def test_the_config_caps_the_ranks_at_this_machines_cpus_only_on_the_local_engine(tmp_path):
    with pytest.raises(ConfigError, match=r"train.ddp_processes: must be 1\.\.\d+ \(this machine's CPU count\)"):
        parse_config({**CONFIG, "train": {"ddp_processes": 10_000}}, root=tmp_path)
    cfg = parse_config({**CONFIG, "train": {"ddp_processes": 10_000}, "compute": {"engine": "ray"}}, root=tmp_path)
    assert cfg.train.ddp_processes == 10_000  # the cluster's CPUs bound them, when the run starts


def test_more_ranks_than_the_clusters_cpus_are_refused_before_ray_train_starts(fake_ray, monkeypatch):
    def never(*args):
        raise AssertionError("no rank should start")

    with pytest.raises(ConfigError) as exc:
        D.ray_data_parallel(3, "cpu", never, never, (), address="10.0.0.5:6379")
    assert str(exc.value) == ("train.ddp_processes: 3 Ray Train workers (1 CPU each) need 3 CPUs, the Ray cluster "
                              "at 10.0.0.5:6379 has 2; lower train.ddp_processes to at most 2 or add nodes to the "
                              "cluster")
    # a job of the Ray engine holds its own CPU on its worker's Ray: 2 workers beside it need 3
    monkeypatch.setenv("RAY_ADDRESS", fake_ray.gcs)
    monkeypatch.setenv("MODELLOOP_JOB_CPUS", "1")
    with pytest.raises(ConfigError, match=r"2 Ray Train workers \(1 CPU each\) and the job that starts them "
                                          r"\(1 CPU\) need 3 CPUs, the Ray cluster at auto has 2"):
        D.ray_data_parallel(2, "cpu", never, never, (), address="auto")


def test_a_search_with_no_cpu_beside_its_job_is_refused_and_one_with_few_runs_what_fits(fake_ray, monkeypatch,
                                                                                      caplog):
    """``train.parallel`` on a 1-CPU cluster where the job itself holds the CPU: its Ray tasks could never
    start, which was a wait for ever; with room for fewer than asked, that many run, said in the log."""
    monkeypatch.setenv("RAY_ADDRESS", fake_ray.gcs)
    monkeypatch.setenv("MODELLOOP_JOB_CPUS", "1")
    fake_ray.cpus = 1
    study = optuna.create_study()
    with pytest.raises(ConfigError, match=r"train.parallel: the Ray cluster at auto has 1 CPUs, none free for the "
                                          r"search's Ray tasks \(1 CPU each\) beside the job that starts it "
                                          r"\(1 CPU\): they would wait for ever"):
        ray_search_loop(study, "sqlite://", print, address="auto", workers=2, seed=0, group=False, budget=None,
                        n_trials=1)
    assert fake_ray.shut  # it joined Ray: it leaves it as it found it
    from modelloop.training.ray_search import _workers_that_fit

    with caplog.at_level("WARNING"):
        assert _workers_that_fit(4, 3.0, 1.0, "auto") == 2
    assert "train.parallel: 4 asked, 2 run at once" in caplog.text
    assert _workers_that_fit(2, 8.0, 0.0, "auto") == 2


def test_jobs_submit_refuses_a_ray_search_whose_job_holds_the_clusters_only_cpu(tmp_path, capsys):
    make_project(tmp_path, {"engine": "ray", "pool": {"cpus": 1, "gpus": 0, "memory": "4GiB"}})
    raw = yaml.safe_load((tmp_path / "modelloop.yaml").read_text())
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump({**raw, "task": "regression", "train": {"parallel": 2}}))
    code, _, err = cli(["jobs", "submit", "--", "train"], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("train.parallel: the search's Ray tasks (1 CPU each, one at least) and the job that starts them "
            "(1 CPU) need 2 cpus, the local Ray has 1") in err
    assert json.loads(cli(["jobs", "list", "--json"], capsys, tmp_path)[1]) == []


def test_rank_0s_result_comes_back_from_the_checkpoint_as_one_process_returns_it(tmp_path):
    """The image family's payload is NumPy arrays, the text family's tensors, scores NumPy floats: what
    ``torch.load(weights_only=True)`` reads back through the marked form is the same values and types."""
    out = {"value": np.float64(0.75), "payload": {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
           "weights": {"w": torch.ones(2)}, "history": [{"epoch": 1, "valid_f1": np.float64(0.5)}],
           "pair": (1, "a"), "none": None}
    torch.save(D._to_plain(out), tmp_path / "r.pt")
    back = D._from_plain(torch.load(tmp_path / "r.pt", weights_only=True))
    assert back["value"] == 0.75 and back["history"] == [{"epoch": 1, "valid_f1": 0.5}]
    assert back["payload"]["fc.weight"].dtype == np.float32
    np.testing.assert_array_equal(back["payload"]["fc.weight"], out["payload"]["fc.weight"])
    assert torch.equal(back["weights"]["w"], torch.ones(2)) and back["pair"] == (1, "a") and back["none"] is None


def test_the_deadline_travels_to_rank_0_on_the_wall_clock(monkeypatch):
    """On Ray rank 0 runs on another node, whose monotonic clock differs: the deadline goes as wall time and
    comes back as that node's monotonic one (here the same clock, so the same instant within a little)."""
    seen = {}

    def rank_0(*, group, deadline):
        seen["deadline"] = deadline
        return {"rank": group.rank}

    def on_ray(world, device, main, worker, args, *, address, storage):
        seen["address"] = address
        return main(D.SINGLE)  # rank 0's function as a Ray Train worker runs it (it must pickle: a partial)

    monkeypatch.setattr(D, "ray_data_parallel", on_ray)
    deadline = time.monotonic() + 100.0
    assert D.run_ranks(2, "cpu", rank_0, print, (), deadline=deadline, ray_address="auto") == {"rank": 0}
    assert seen["address"] == "auto" and seen["deadline"] == pytest.approx(deadline, abs=0.5)
    D.run_ranks(2, "cpu", rank_0, print, (), deadline=math.inf, ray_address="auto")
    assert seen["deadline"] == math.inf


def test_what_lives_in_this_process_reaches_rank_0_here_and_is_replayed_after_a_run_on_ray(monkeypatch):
    """``in_process`` (a trial, a callback) is given to rank 0 only when it runs in this process; on Ray
    rank 0 gets None and ``replay`` gets this run's epochs (from ``resumed_from_epoch``) once it ended."""
    history = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]

    def rank_0(*, group, deadline, trial):
        return {"trial": trial, "history": history, "resumed_from_epoch": 1}

    replayed: list = []
    monkeypatch.setattr(D, "ray_data_parallel", lambda world, device, main, worker, args, *, address, storage:
                        main(D.SINGLE))
    here = D.run_ranks(1, "cpu", rank_0, print, (), deadline=math.inf, in_process={"trial": "T"},
                       replay=replayed.extend)
    assert here["trial"] == "T" and replayed == []
    there = D.run_ranks(2, "cpu", rank_0, print, (), deadline=math.inf, ray_address="auto",
                        in_process={"trial": "T"}, replay=replayed.extend)
    assert there["trial"] is None and replayed == history[1:]


def test_a_run_on_ray_reports_its_epochs_to_the_trial_afterwards():
    trial = optuna.create_study(direction="maximize").ask()
    D.report_epochs(trial, [{"epoch": 2, "valid_f1": 0.5}, {"epoch": 3, "valid_f1": float("nan")}], "f1")
    values = trial.study.trials[0].intermediate_values
    assert list(values) == [1, 2] and values[1] == 0.5 and math.isnan(values[2])
    D.report_epochs(None, [{"epoch": 1, "valid_f1": 0.5}], "f1")  # no trial: nothing to do


@pytest.fixture(scope="module")
def ray_cluster():
    """One real Ray head with 2 CPUs for the slow tests below (each start costs 15-30 s here); yields its
    address and the list of ``ray_data_parallel`` calls the families made (the real one runs)."""
    pytest.importorskip("ray")
    import ray
    from jobs_toy import ray_head

    calls: list[int] = []
    real = D.ray_data_parallel

    def spied(world, *args, **kwargs):
        calls.append(world)
        return real(world, *args, **kwargs)

    with ray_head(cpus=2) as (address, _), pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "ray_data_parallel", spied)
        mp.delenv("MODELLOOP_JOB_CPUS", raising=False)
        try:
            yield address, calls
        finally:
            ray.shutdown()


@pytest.mark.slow
def test_text_ranks_as_ray_train_workers_give_the_local_result(ray_cluster, tmp_path_factory):
    """Slow (Ray Train's controller and 2 workers, twice: about 2.5 minutes at load 10). The tiny BERT
    fine-tuned for 3 epochs: stopped by its deadline after epoch 1, resumed from rank 0's checkpoint, on 2
    Ray Train workers, against one local process: the same loss curve and weights; the trial gets every
    epoch's score; 3 ranks on the 2-CPU cluster are the exit-2 error naming its CPUs."""
    import pandas as pd
    from text_toy import build_tiny_backbone, make_texts

    from modelloop.families.text import estimator as E
    from modelloop.families.text import fit as F
    from modelloop.families.text import search as S
    from modelloop.families.text.backbone import texts_of
    from modelloop.families.text.model import TextModel

    address, calls = ray_cluster
    torch.set_num_threads(1)
    folder = build_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    texts = make_texts(n_per_class=20)
    model = TextModel({"backbone": str(folder), "method": "full", "epochs": 3, "learning_rate": 1e-3,
                       "batch_size": 8, "dropout": 0.0, "early_stopping_patience": 3}, text_column="message")
    job, _ = E.prepare_job(model, texts_of(texts, "message"), pd.Series(texts["intent"]))
    params = S.default_params(job.settings)
    one = F.run_params(job, params, checkpoint=tmp_path_factory.mktemp("one") / "trial.pt")

    ckpt = tmp_path_factory.mktemp("ray") / "trial.pt"
    job.ddp_processes, job.ray_address = 2, address
    trial = optuna.create_study(direction="maximize").ask()
    first = F.run_params(job, params, checkpoint=ckpt, deadline=0.0)
    two = F.run_params(job, params, checkpoint=ckpt, trial=trial)
    job.ddp_processes = 3
    with pytest.raises(ConfigError, match=f"3 Ray Train workers .* the Ray cluster at {address} has 2"):
        F.run_params(job, params, checkpoint=ckpt)
    assert calls[:3] == [2, 2, 3]  # every run went through Ray Train
    assert first["epochs_run"] == 1 and two["epochs_run"] == 3 and two["resumed_from_epoch"] == 1
    loss1 = [h["train_loss"] for h in one["history"]]
    assert loss1[-1] < loss1[0]
    np.testing.assert_allclose([h["train_loss"] for h in two["history"]], loss1, rtol=2e-3)
    for name, w in one["payload"].items():
        np.testing.assert_allclose(two["payload"][name].numpy(), w.numpy(), atol=2e-4, err_msg=name)
    metric = f"valid_{job.metric}"
    reported = trial.study.trials[0].intermediate_values
    assert reported == {1: pytest.approx(two["history"][1][metric]), 2: pytest.approx(two["history"][2][metric])}
    assert not list(ckpt.parent.glob("modelloop-ray-train-*"))  # Ray Train's run folder removed


@pytest.mark.slow
def test_image_ranks_as_ray_train_workers_give_the_local_two_process_result(ray_cluster, tmp_path):
    """Slow (about a minute). On CPU each rank's batch norm sees its own rows, so the image family's 2-rank
    curve is not one process's (docs/design.md): it is compared with 2 local processes, the same split of
    the same batches. The weights come back as NumPy arrays, as locally."""
    import modelloop.families.image.fit as F
    from modelloop.examples.images import draw_part
    from modelloop.families.image.config import ImageModelConfig

    address, calls = ray_cluster
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    kinds = ("bolt", "nut", "washer")
    x = np.stack([np.asarray(draw_part(kinds[i % 3], 16, rng)) for i in range(36)])
    y = np.arange(36) % 3
    settings = ImageModelConfig(image_size=16, method="last_blocks", trainable_blocks=1, early_stopping_patience=5)
    params = {"learning_rate": 1e-3, "epochs": 2, "batch_size": 8, "augment": 0.3}
    out = {}
    for where in (None, address):
        job = F.ImageJob(settings, list(kinds), x[:27], y[:27], x[27:], y[27:], "f1_macro", "balanced", 0, "cpu",
                         root=tmp_path, ddp_processes=2, ray_address=where)
        out[where] = F.run_params(job, params, checkpoint=tmp_path / f"{where is None}" / "ckpt.pt")
    local, ray_run = out[None], out[address]
    assert calls[-1] == 2 and ray_run["epochs_run"] == local["epochs_run"] == 2
    np.testing.assert_allclose([h["train_loss"] for h in ray_run["history"]],
                               [h["train_loss"] for h in local["history"]], rtol=2e-3)
    assert ray_run["value"] == pytest.approx(local["value"])
    for name, w in local["payload"].items():
        assert isinstance(ray_run["payload"][name], np.ndarray), name
        np.testing.assert_allclose(ray_run["payload"][name], w, atol=2e-4, err_msg=name)


@pytest.mark.slow
def test_on_a_real_head_a_job_holding_its_cpus_gets_the_exit_2_error_not_a_wait(ray_cluster, monkeypatch):
    """Slow only for the head (the checks take a second). A job of the Ray engine joins its worker's Ray by
    ``RAY_ADDRESS`` and knows its own CPUs by ``MODELLOOP_JOB_CPUS``: the GCS address Ray reports once
    joined is that same string, so the job's CPUs are counted; joined elsewhere they are not."""
    from modelloop.compute.ray_engine import connect_ray, cpus_beside_job

    address, _ = ray_cluster
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv("MODELLOOP_JOB_CPUS", "2")
    assert cpus_beside_job(connect_ray("auto")) == (2.0, 2.0)
    with pytest.raises(ConfigError, match="the Ray cluster at auto has 2 CPUs, none free .* \\(2 CPU\\)"):
        ray_search_loop(optuna.create_study(), "sqlite://", print, address="auto", workers=2, seed=0, group=False,
                        budget=None, n_trials=1)
    with pytest.raises(ConfigError, match="2 Ray Train workers .* and the job that starts them \\(2 CPU\\) need 4"):
        D.run_ranks(2, "cpu", print, print, (), deadline=math.inf, ray_address="auto")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # another Ray's job: its CPUs are not this cluster's
    assert cpus_beside_job(connect_ray(address)) == (2.0, 0.0)


# a job's program standing in for `modelloop train` with train.parallel: 2 on compute.address: auto
SEARCHER = ("import sys, optuna; from modelloop.errors import ModelloopError; "
            "from modelloop.training.ray_search import ray_search_loop\n"
            "try:\n    ray_search_loop(optuna.create_study(), 'sqlite://', print, address='auto', workers=2, seed=0, "
            "group=False, budget=None, n_trials=1)\n"
            "except ModelloopError as e:\n    print(e, file=sys.stderr); sys.exit(2)")


@pytest.mark.slow
def test_a_ray_engine_job_whose_search_has_no_cpu_left_ends_with_exit_2(ray_cluster, tmp_path):
    """The hang this fixes, end to end: the Ray engine's worker runs a job holding both CPUs of the cluster;
    the job's search (2 Ray tasks) would never be placed. It ends with exit 2 and the one-line reason."""
    import sys

    from modelloop.catalog import Catalog
    from modelloop.compute import ComputeConfig
    from modelloop.compute.queue import FINISHED, JobQueue
    from modelloop.compute.ray_engine import RayEngine, cluster_pool, connect_ray
    from modelloop.compute.worker import Worker

    address, _ = ray_cluster
    ray = connect_ray(address)
    queue = JobQueue(Catalog(f"sqlite:///{tmp_path / 'c.db'}"))
    w = Worker(queue, ComputeConfig(poll_seconds=0.05, engine="ray"), cluster_pool(ray),
               RayEngine(ray, (sys.executable, "-c", SEARCHER)))
    job = queue.submit(project="p", root=str(tmp_path), command=[], priority=50, submitter="t",
                       resources={"cpus": 2, "gpus": 0, "memory": 0, "custom": {}}, features={},
                       logs_dir=str(tmp_path / "jobs"))
    end = time.monotonic() + 180
    while queue.get(job)["state"] not in FINISHED:
        assert time.monotonic() < end, "the job's search is still waiting for a CPU"
        w.step()
        time.sleep(0.1)
    row = queue.get(job)
    assert (row["state"], row["exit_code"]) == ("failed", 2)
    log = open(row["logs"]).read()
    assert "train.parallel: the Ray cluster at auto has 2 CPUs, none free for the search's Ray tasks (1 CPU each) " \
           "beside the job that starts it (2 CPU): they would wait for ever" in log, log


@pytest.mark.parametrize("family", ["text", "image"])
def test_the_train_stage_sends_the_ranks_to_ray_train_on_the_ray_engine(family, tmp_path, monkeypatch):
    """A project with ``compute.engine: ray`` and ``train.ddp_processes: 2``: the stage hands the fine-tune to
    Ray Train on ``compute.address`` (stood in for here: it records the call and stops the run with a
    config error, which reaches the caller as one process's would)."""
    from modelloop.data.ingest import ingest
    from modelloop.workspace import Workspace

    seen = []

    def on_ray(world, device, main, worker, args, *, address, storage):
        seen.append((world, device, address))
        raise ConfigError("stood in for Ray Train")

    monkeypatch.setattr(D, "ray_data_parallel", on_ray)
    compute = {"engine": "ray", "address": "127.0.0.1:6399"}
    train = {"budget": 60, "trials": 1, "ddp_processes": 2}
    if family == "text":
        from text_toy import build_tiny_backbone, make_texts

        from modelloop.families.text.stage import train_text as train_stage

        make_texts(n_per_class=8).to_json(tmp_path / "data.jsonl", orient="records", lines=True)
        raw = {"name": "intents", "task": "text_classification", "train": train, "compute": compute,
               "data": {"source": "data.jsonl", "target": "intent", "text": "message"},
               "model": {"backbone": str(build_tiny_backbone(tmp_path / "tiny-bert")), "method": "full",
                         "epochs": 1, "device": "cpu", "classical": False}}
    else:
        from modelloop.examples.images import generate_images
        from modelloop.families.image.stage import train_image as train_stage

        generate_images(tmp_path / "images", per_class=4, size=16)
        raw = {"name": "parts", "task": "image_classification", "train": train, "compute": compute,
               "data": {"source": "images", "target": "label"},
               "model": {"image_size": 16, "method": "last_blocks", "epochs": 1, "device": "cpu"}}
    ws = Workspace(parse_config(raw, root=tmp_path))
    ingest(ws)
    with pytest.raises(ConfigError, match="stood in for Ray Train"):
        train_stage(ws)
    assert seen == [(2, "cpu", "127.0.0.1:6399")]
