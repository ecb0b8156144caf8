"""A fine-tune that a small ``train.budget`` (or little data) holds to a handful of optimizer steps: its
first step already learns (the warm-up does not start at learning rate 0, which once left a one-step
"fine-tuned" model equal to the base model), and the train summary warns that the model is barely
changed and what to raise. A fine-tune of enough steps whose training loss did not fall (a learning rate
far too low) is warned of too, naming ``model.learning_rate``."""

from __future__ import annotations

import json
import time

import torch
import yaml
from clirun import cli

from modelloop.families.generative.few_steps import few_steps_warning, flat_loss_warning
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


def _train_summary(tmp_path, capsys, tiny_llama, pairs, train: dict | None = None, **model) -> dict:
    """``modelloop ingest`` then ``train --json`` on the tiny model with these model settings: the summary."""
    from gen_toy import gen_config

    pairs.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, eval_samples=2, max_new_tokens=4, **model)
    if train is not None:
        raw["train"] = train
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    return json.loads(out)


def test_the_train_summary_warns_of_a_budget_that_allowed_one_step(tmp_path, capsys, tiny_llama, pairs):
    # a budget spent before the first step ends: the fine-tune makes one
    summary = _train_summary(tmp_path, capsys, tiny_llama, pairs, train={"budget": 0.01}, epochs=100,
                             early_stopping_patience=100, batch_size=1, packing=False)
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


def _epochs(*losses: float) -> list[dict]:
    return [{"epoch": i + 1, "train_loss": loss, "val_loss": loss} for i, loss in enumerate(losses)]


def test_a_flat_training_loss_warns_and_a_falling_one_does_not():
    flat = flat_loss_warning(_epochs(5.98641, 5.98641, 5.98641, 5.98641), method="full", learning_rate=1e-9)
    assert flat == ("the training loss did not fall: 5.986 in the first epoch, 5.986 at its lowest in the 3 after "
                    "(a fall under 1%): the fine-tuned model is all but the base model; check model.learning_rate "
                    "(1e-09 in this run; too low leaves the weights where they were)"), flat
    # noise under 1 % either way is no fall; LoRA names what its adapters train
    noisy = flat_loss_warning(_epochs(3.0, 3.01, 2.995, 3.004), method="lora", learning_rate=2e-4)
    assert noisy is not None and noisy.endswith("model.lora_r, model.lora_alpha, model.lora_target_modules and "
                                                "model.lora_layers (what the LoRA adapters train)"), noisy
    # a noisy fall (the last epoch above an earlier one) and a steady one
    assert flat_loss_warning(_epochs(3.0, 3.05, 2.9, 2.95, 2.7, 2.8), method="full", learning_rate=1e-2) is None
    assert flat_loss_warning(_epochs(5.14, 2.81, 1.41, 0.65), method="full", learning_rate=1e-2) is None
    # LoRA at 1e-2 on the tiny random model: 0.9 % in its second epoch, 3.3 % by its twelfth
    assert flat_loss_warning(_epochs(5.95917, 5.90745, 5.88188, 5.75955), method="lora", learning_rate=1e-2) is None


def test_a_partial_or_single_epoch_is_not_judged():
    # one epoch has nothing to compare; a partial last epoch (the budget stopped it) averages a subset
    assert flat_loss_warning(_epochs(5.0), method="full", learning_rate=1e-9) is None
    partial = _epochs(5.0, 5.3)
    partial[1].update(batches=2, of_batches=20)
    assert flat_loss_warning(partial, method="full", learning_rate=1e-2) is None
    partial = _epochs(5.0, 5.0, 4.0)
    partial[2].update(batches=2, of_batches=20)
    assert flat_loss_warning(partial, method="full", learning_rate=1e-9) is not None  # the whole epochs are flat


def test_the_train_summary_warns_of_a_training_loss_that_did_not_fall(tmp_path, capsys, tiny_llama, pairs):
    summary = _train_summary(tmp_path, capsys, tiny_llama, pairs, epochs=3, early_stopping_patience=3,
                             learning_rate=1e-9)
    g = summary["generation"]
    assert g["steps_run"] >= 5 and g["epochs_run"] == 3 and g["stopped_by_budget"] is False, g  # enough steps
    (warning,) = summary["warnings"]
    assert warning.startswith("the training loss did not fall: 5.9"), warning
    assert warning.endswith("check model.learning_rate (1e-09 in this run; too low leaves the weights where they "
                            "were)"), warning


def test_the_tests_normal_fine_tune_has_no_warning(trained):
    losses = [h["train_loss"] for h in trained.model.description_["training"]["history"]]
    assert losses[-1] < losses[0] * 0.5, losses  # its training loss fell: no warning of a flat one
    assert trained.summary["warnings"] == [], trained.summary["warnings"]
