"""``train.budget`` bounds every fine-tuning trial, the first and the configured one included: a trial
stops after the optimizer step that passes the deadline (mid-epoch too), is scored on what it reached and
says ``stopped_by_budget``; the model it leaves is registered and answers behind the server."""

from __future__ import annotations

import json
import time

import httpx
import yaml
from clirun import cli
from servers import running

from modelloop.families.generative.fit import params_of, run_params


def test_a_passed_deadline_stops_the_run_after_one_optimizer_step(full_tune_job):
    job, settings = full_tune_job
    out = run_params(job, params_of(settings), deadline=time.monotonic())
    assert out["stopped_by_budget"] is True and out["epochs_run"] == 1
    (row,) = out["history"]
    assert row["batches"] == 2 and row["of_batches"] == 18  # one optimizer step of two accumulated batches
    assert out["weights"] and round(out["value"], 5) == row["val_loss"]
    whole = run_params(job, {**params_of(settings), "epochs": 1})
    assert whole["stopped_by_budget"] is False and "batches" not in whole["history"][0]


def test_a_tiny_budget_bounds_the_first_trial_and_its_model_is_served(tmp_path, capsys, tiny_llama, pairs):
    from gen_toy import gen_config

    from modelloop.project import Project
    from modelloop.serving import ServeConfig, create_app

    pairs.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    # 100 epochs of one-sequence steps with a patience that never ends them: minutes unbounded
    raw = gen_config(tmp_path, tiny_llama, epochs=100, early_stopping_patience=100, batch_size=1, packing=False,
                     learning_rate=1e-3, eval_samples=2, max_new_tokens=4)
    raw["train"] = {"budget": 2}
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    t0 = time.monotonic()
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    seconds = time.monotonic() - t0
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    g = summary["generation"]
    assert g["stopped_by_budget"] is True and 1 <= g["epochs_run"] < 100, g
    assert 0 < g["evaluation_seconds"] < seconds      # the test split's evaluation, timed apart
    # its 2 answers are one batch, and 8 rows one step of the perplexities: always scored, by both models,
    # whatever is left of the budget (tests/generative/test_eval_budget.py counts the rest)
    assert (g["evaluated_rows"], g["evaluation_rows"]) == (2, 2) and 8 <= g["perplexity_rows"], g
    # what the one-screen summary shows: the training line, validation named by its loss, the base model
    assert summary["validation_metric"] == "log_loss" and summary["metric"] == "chrf"
    assert summary["training_summary"].endswith(f"{g['epochs_run']} epochs, {g['tokens_per_s']:.0f} tokens/s, "
                                                "stopped by train.budget")
    assert summary["base_test_metrics"] == {**g["base_metrics"], "perplexity": g["base_perplexity"]}
    # the deadline cut the schedule (535 of 4,300 configured steps on a quiet machine; unbounded, all of
    # them): what shows the budget at work whatever the load; the whole call took 6.7 s quiet, 32.7-43 s
    # at load 8-10, so its wall bound is only a coarse one
    assert g["steps_run"] < g["steps_configured"] / 2, g
    assert seconds < 2 + 90, seconds  # the budget, plus loading, validation and the perplexities
    ws = Project.load(str(tmp_path / "modelloop.yaml")).workspace
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={"model": "helpdesk", "max_tokens": 4,
                             "messages": [{"role": "user", "content": "Where is my order?"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"
