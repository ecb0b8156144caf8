"""A fine-tune that a small ``train.budget`` (or little data) holds to a handful of optimizer steps: its
first step already learns (the warm-up does not start at learning rate 0, which once left a one-step
"fine-tuned" model equal to the base model), and the train summary warns that the model is barely
changed and what to raise."""

from __future__ import annotations

import json
import time

import torch
import yaml
from clirun import cli

from modelloop.families.generative.few_steps import few_steps_warning
from modelloop.families.generative.fit import network_for, params_of, run_params, trainable_state


def test_a_one_step_fine_tune_moves_the_weights(full_tune_job):
    # 5 epochs of 9 steps: a warm-up of 2 steps (the default warmup_ratio 0.05), of which one is run
    job, settings = full_tune_job
    params = params_of(settings)
    out = run_params(job, params, deadline=time.monotonic())  # a passed deadline: one optimizer step
    assert out["steps_run"] == 1 and out["steps_configured"] == 45 and out["stopped_by_budget"] is True, out
    assert out["last_step_lr"] > 0 and out["load_seconds"] >= 0, out  # was 0: step 0 of the warm-up
    base = trainable_state(network_for(job, params))
    moved = [k for k, w in out["weights"].items() if not torch.equal(w, base[k])]
    assert moved, "one optimizer step left every weight as the base model's"


def test_the_train_summary_warns_of_a_budget_that_allowed_one_step(tmp_path, capsys, tiny_llama, pairs):
    from gen_toy import gen_config

    pairs.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, epochs=100, early_stopping_patience=100, batch_size=1, packing=False,
                     eval_samples=2, max_new_tokens=4)
    raw["train"] = {"budget": 0.01}  # spent before the first step ends: the fine-tune makes one
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    g = summary["generation"]
    assert g["steps_run"] == 1 and g["stopped_by_budget"] is True and g["last_step_lr"] > 0, g
    (warning,) = summary["warnings"]
    # the search's share of the budget (the rest is the evaluation's: eval_budget.py)
    assert warning.startswith("the fine-tune made 1 optimizer step in its 0.008 s of train.budget (loading the "
                              "model took "), warning
    assert warning.endswith("the model is barely changed from the base model; raise train.budget")


def test_few_steps_without_a_budget_name_the_data_and_epochs():
    line = few_steps_warning(steps_run=2, stopped_by_budget=False, search_seconds=None, load_seconds=1.0,
                             fit_examples=3, epochs=1)
    assert line is not None and line.startswith("the fine-tune made 2 optimizer steps (3 training examples, "
                                                "model.epochs 1)") and "raise model.epochs" in line
    assert few_steps_warning(steps_run=1, stopped_by_budget=True, search_seconds=16.0, load_seconds=14.0,
                             fit_examples=3, epochs=1) == (
        "the fine-tune made 1 optimizer step in its 16 s of train.budget (loading the model took 14 s): the model "
        "is barely changed from the base model; raise train.budget")
    assert few_steps_warning(steps_run=5, stopped_by_budget=True, search_seconds=16.0, load_seconds=14.0,
                             fit_examples=3, epochs=1) is None
