"""``train.ddp_processes`` for the generative family: a full fine-tune of the tiny Llama in 2 data-parallel
processes (gloo on CPU) follows the one-process run's loss curve and ends at its weights (same global batch,
each rank's loss weighted by its share of the batch's completion tokens); a run stopped by its caller after
epoch 1 resumes from rank 0's checkpoint; a deadline inside an epoch stops every rank at the same step; the
train stage registers a model that the server answers with as offline."""

from __future__ import annotations

import multiprocessing
import time

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from modelloop.families.generative.config import GenerativeModelConfig
from modelloop.families.generative.data import Shape, encode_examples, examples_of
from modelloop.families.generative.fit import GenJob, params_of, run_params


def _job(tiny_llama, pairs, n: int) -> GenJob:
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    # 13 packed sequences, a global batch of 4: the last batch (1 sequence) leaves rank 1 without rows
    settings = GenerativeModelConfig(backbone=str(tiny_llama), method="full", epochs=3, max_length=64,
                                     batch_size=4, learning_rate=1e-2, early_stopping_patience=3)
    ex = examples_of(pairs.head(30), Shape("pairs", "prompt", "completion"), tok)
    ids, labels, _ = encode_examples(tok, ex, 64)
    return GenJob(settings, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:24], labels[:24], ids[24:],
                  labels[24:], 0, "cpu", ddp_processes=n)


def _no_rank_left() -> bool:
    return not [p for p in multiprocessing.active_children() if p.name.startswith("modelloop-ddp")]


@pytest.fixture(scope="module")
def runs(tiny_llama, pairs, tmp_path_factory):
    one = run_params(_job(tiny_llama, pairs, 1), params_of(_job(tiny_llama, pairs, 1).settings))
    job = _job(tiny_llama, pairs, 2)
    ckpt = tmp_path_factory.mktemp("ddp") / "ckpt.pt"

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt  # what a preempted job's SIGTERM becomes

    with pytest.raises(KeyboardInterrupt):
        run_params(job, params_of(job.settings), checkpoint=ckpt, on_epoch=stop_after_first)
    assert ckpt.is_file() and _no_rank_left()
    two = run_params(job, params_of(job.settings), checkpoint=ckpt)
    return one, two


def test_two_processes_follow_the_one_process_loss_curve(runs):
    one, two = runs
    history = one["history"]
    assert len(history) == 3 and history[-1]["val_loss"] < history[0]["val_loss"]  # it learned something
    assert two["resumed_from_epoch"] == 1 and two["epochs_run"] == one["epochs_run"] == 3
    # the tokens read by both ranks, epoch 1's kept in the checkpoint
    assert two["steps_run"] == one["steps_run"] and two["train_tokens"] == one["train_tokens"]
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in two["history"]] == pytest.approx([h[key] for h in one["history"]], rel=2e-3)
    for name, w in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], w, atol=2e-4, rtol=2e-3, msg=name)


def test_a_deadline_inside_an_epoch_stops_every_rank_at_the_same_step(tiny_llama, pairs):
    job = _job(tiny_llama, pairs, 2)
    t0 = time.monotonic()
    out = run_params(job, params_of(job.settings), deadline=time.monotonic())  # passed before the first step
    assert out["stopped_by_budget"] and out["steps_run"] == 1 and out["epochs_run"] == 1
    assert out["history"][0]["batches"] == 1 and out["history"][0]["of_batches"] == 4
    assert _no_rank_left() and time.monotonic() - t0 < 60


def test_the_train_stage_registers_a_two_process_model_that_serves_as_offline(tiny_llama, tmp_path):
    import httpx
    from gen_toy import FACTS, gen_config, make_pairs
    from servers import running

    from modelloop.config import parse_config
    from modelloop.project import Project
    from modelloop.registry import load_model
    from modelloop.serving import create_app

    make_pairs(60).to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    raw = gen_config(tmp_path, tiny_llama, epochs=3, batch_size=4, eval_samples=1)
    raw["train"] = {"budget": 120, "trials": 1, "ddp_processes": 2}
    project = Project(parse_config(raw, root=tmp_path))
    project.ingest()
    summary = project.train()
    assert summary["generation"]["epochs_run"] == 3 and _no_rank_left()
    row = project.workspace.catalog.get_model("helpdesk", summary["model"]["version"])
    assert row["info"]["description"]["training"]["ddp_processes"] == 2
    model = load_model(project.workspace, row)
    offline = model.predict([{"prompt": q} for q, _ in FACTS[:3]])
    assert all(offline), offline  # something to compare
    with running(create_app(project.workspace)) as url:
        for (question, _), answer in zip(FACTS[:3], offline, strict=True):
            reply = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                               json={"model": "helpdesk", "temperature": 0, "max_tokens": 12,
                                     "messages": [{"role": "user", "content": question}]}).json()
            assert reply["choices"][0]["message"]["content"] == answer


@pytest.mark.slow
def test_on_the_ray_engine_the_ranks_are_ray_train_workers(runs, tiny_llama, pairs, tmp_path):
    """Slow (a Ray head, Ray Train's controller and 2 workers importing transformers: about a minute here);
    the loop the workers run is the one the fast tests above check in local processes."""
    pytest.importorskip("ray")
    import ray
    from jobs_toy import ray_head

    one, _ = runs
    job = _job(tiny_llama, pairs, 2)
    seen = []
    with ray_head(cpus=2) as (address, _):
        job.ray_address = address
        try:
            out = run_params(job, params_of(job.settings), checkpoint=tmp_path / "ckpt.pt", on_epoch=seen.append)
        finally:
            ray.shutdown()
    # rank 0 ran on the cluster: its epochs reach on_epoch once the run has ended, all 3 of them
    assert [r["epoch"] for r in seen] == [1, 2, 3] and out["epochs_run"] == 3 and _no_rank_left()
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in out["history"]] == pytest.approx([h[key] for h in one["history"]], rel=2e-3)
    for name, w in one["weights"].items():
        torch.testing.assert_close(out["weights"][name], w, atol=2e-4, rtol=2e-3, msg=name)
    assert not list(tmp_path.glob("modelloop-ray-train-*"))  # Ray Train's run folder removed


def test_dpo_on_lora_adapters_in_two_processes_takes_the_one_process_steps(tiny_llama):
    """DPO (every pair weighs the same in a batch's loss) through PEFT's LoRA adapters under DDP: 18
    pairs in global batches of 4 (the last, 2 pairs, one a rank), 2 epochs, no dropout."""
    from gen_toy import FACTS

    from modelloop.families.generative.data import detect_shape
    from modelloop.families.generative.preference import PreferencePairs, encode_preferences

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    frame = pd.DataFrame([{"prompt": q, "chosen": a, "rejected": FACTS[(i + 1) % len(FACTS)][1]}
                          for i, (q, a) in enumerate(FACTS * 4)])
    ids, labels, rej_ids, rej_labels, _ = encode_preferences(tok, frame, detect_shape(None, list(frame.columns)), 64)
    settings = GenerativeModelConfig(backbone=str(tiny_llama), method="lora", epochs=2, batch_size=4,
                                     learning_rate=2e-2, early_stopping_patience=3, lora_dropout=0.0,
                                     lora_target_modules=["q_proj", "v_proj"])
    out = {}
    for n in (1, 2):
        job = GenJob(settings, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:18], labels[:18], ids[18:],
                     labels[18:], 0, "cpu", PreferencePairs(rej_ids[:18], rej_labels[:18], rej_ids[18:],
                                                            rej_labels[18:]), ddp_processes=n)
        out[n] = run_params(job, params_of(settings))
    one, two = out[1], out[2]
    assert one["history"][-1]["val_loss"] < one["history"][0]["val_loss"]  # it learned something
    for key in ("train_loss", "val_loss", "val_margin"):
        assert [h[key] for h in two["history"]] == pytest.approx([h[key] for h in one["history"]], rel=2e-3, abs=1e-4)
    for name, w in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], w, atol=2e-4, rtol=2e-3, msg=name)
