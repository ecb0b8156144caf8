"""``train.ddp_processes``: a text fine-tune in 2 data-parallel processes (gloo on CPU) takes the same
steps as one process with the same global batch, and the model it builds classifies its training rows as
the one-process model does; a killed run resumes from rank 0's checkpoint. Bad values are config errors (exit 2)."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from modelloop.config import parse_config
from modelloop.errors import ConfigError
from modelloop.families.text import estimator as E
from modelloop.families.text import fit as F
from modelloop.families.text import search as S
from modelloop.families.text.backbone import texts_of
from modelloop.families.text.model import TextModel
from modelloop.training.distributed import check_processes, data_parallel
from text_toy import build_tiny_backbone, make_texts

torch.set_num_threads(1)  # each rank on one thread (the spawned rank gets this process's count / N)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same fine-tune (full, 3 epochs, batch 8, no dropout) in 1 and in 2 processes."""
    folder = build_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))
    config = json.loads((folder / "config.json").read_text())
    # no dropout: the 2 ranks draw other masks than one process would, which is noise, not a difference
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    texts = make_texts(n_per_class=20)
    model = TextModel(
        {
            "backbone": str(folder),
            "method": "full",
            "epochs": 3,
            "learning_rate": 1e-3,
            "batch_size": 8,
            "dropout": 0.0,
            "early_stopping_patience": 3,
        },
        text_column="message",
    )
    out = {}
    for n in (1, 2):
        job, _ = E.prepare_job(model, texts_of(texts, "message"), pd.Series(texts["intent"]))
        job.ddp_processes = n
        params = S.default_params(job.settings)
        ckpt = tmp_path_factory.mktemp(f"ckpt{n}") / "trial.pt"
        if n == 2:  # killed after epoch 1 (the deadline), then resumed: rank 0's checkpoint carries it on
            first = F.run_params(job, params, checkpoint=ckpt, deadline=0.0)
            assert first["epochs_run"] == 1 and ckpt.is_file()
            assert not list(ckpt.parent.glob(".*.tmp"))  # one writer, no stray temporary files
        result = F.run_params(job, params, checkpoint=ckpt)
        built = F.build_model(
            job, params, result, model_class=TextModel, text_column="message", target=None, description={}
        )
        out[n] = (job, result, built)
    return texts, out


def test_two_processes_follow_the_one_process_loss_curve(runs):
    _, out = runs
    (_, one, _), (_, two, _) = out[1], out[2]
    assert two["epochs_run"] == one["epochs_run"] == 3 and two["resumed_from_epoch"] == 1
    loss1 = [h["train_loss"] for h in one["history"]]
    loss2 = [h["train_loss"] for h in two["history"]]
    assert loss1[-1] < loss1[0]  # it learned something, so equal curves mean something
    np.testing.assert_allclose(loss2, loss1, rtol=2e-3)
    for name, w in one["payload"].items():  # the same weights after 3 epochs of all-reduced steps
        np.testing.assert_allclose(two["payload"][name].numpy(), w.numpy(), atol=2e-4, err_msg=name)


def test_the_data_parallel_model_serves_its_training_rows_as_one_process(runs):
    texts, out = runs
    labels1 = out[1][2].predict(texts)
    labels2 = out[2][2].predict(texts)
    assert list(labels2) == list(labels1)
    assert (np.asarray(labels2) == texts["intent"].to_numpy()).mean() >= 0.9


@pytest.mark.parametrize("value, message", [(2.5, "integer"), (10_000, "CPU"), (0, "greater than or equal")])
def test_bad_process_counts_are_config_errors(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(
            {"name": "x", "data": {"source": "d.csv", "target": "y"}, "train": {"ddp_processes": value}},
            root=tmp_path,
        )


def test_more_processes_than_gpus_is_a_config_error():
    n = torch.cuda.device_count() + 1
    if n <= (os.cpu_count() or 1):
        with pytest.raises(ConfigError, match="visible GPUs"):
            check_processes(n, "cuda")
    with pytest.raises(ConfigError, match="whole number"):
        check_processes(True, "cpu")  # type: ignore[arg-type]


def test_a_pruned_trial_stops_every_rank(runs):
    """Rank 0's trial is pruned after epoch 1: it raises TrialPruned and the other rank leaves too."""
    import multiprocessing

    import optuna

    class PruneAll(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    _, out = runs
    job = out[2][0]
    trial = optuna.create_study(pruner=PruneAll()).ask()
    with pytest.raises(optuna.TrialPruned):
        F.run_params(job, S.default_params(job.settings), trial=trial)
    assert list(trial.study.trials[0].intermediate_values) == [0]  # one epoch reported, then pruned
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("modelloop-ddp")]


class _ExitsWhenUnpickled:
    """An argument whose unpickling ends the worker process before it joins the group (the fork
    server reports SystemExit as code 1)."""

    def __reduce__(self):
        return (sys.exit, (3,))


def _never_called(group, arg) -> None:
    raise AssertionError("the worker should have exited while unpickling its arguments")


def test_a_worker_that_dies_before_joining_fails_rank_0_at_once():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"modelloop-ddp-1 exited \(code [1-9]\d*\) before joining"):
        with data_parallel(2, "cpu", _never_called, (_ExitsWhenUnpickled(),)):
            pass
    assert time.monotonic() - t0 < 60  # not the 30-minute rendezvous timeout
