"""Fine-tuning the tiny Llama through the train stage: registration, perplexity against the base model, the
report, tokens/s; a killed run resumes at its next epoch; the registered model answers as evaluation did."""

from __future__ import annotations

import html

import pytest
import torch

from modelloop.families.generative.config import GenerativeModelConfig
from modelloop.families.generative.data import Shape, encode_examples, examples_of
from modelloop.families.generative.fit import GenJob, params_of, run_params


def test_train_registers_a_generative_model_that_beats_its_base(trained):
    s = trained.summary
    assert s["family"] == "generative" and s["task"] == "generation"
    assert trained.row["family"] == "generative" and trained.row["info"]["head"] == "generation"
    g = s["generation"]
    assert g["shape"] == "pairs" and g["tokens_per_s"] > 0 and g["train_tokens"] > 0
    assert g["perplexity"] < g["base_perplexity"] / 2, g   # lr 1e-2 on six facts: it learns them
    assert s["test_metrics"]["chrf"] > g["base_metrics"]["chrf"]
    assert g["profile"]["rows"] == s["rows"]["train"]


def test_report_shows_prompts_and_both_answers_escaped(trained):
    page = open(trained.summary["report"], encoding="utf-8").read()
    assert "<th>base model</th>" in page and "<th>fine-tuned</th>" in page
    prompt = trained.model.shape_.prompt
    assert html.escape("How do I return an item?") in page or "怎么退货" in page, prompt
    assert "<|im_start|>" not in page  # the raw prompt, not the template


def test_the_registered_model_answers_its_training_prompts(trained):
    from gen_toy import FACTS

    answers = trained.model.predict([{"prompt": q} for q, _ in FACTS])
    right = sum(a == ref for a, (_, ref) in zip(answers, FACTS, strict=True))
    assert right >= 4, list(zip(answers, FACTS, strict=True))


def test_a_killed_run_resumes_at_its_next_epoch(tiny_llama, pairs, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    settings = GenerativeModelConfig(backbone=str(tiny_llama), epochs=2, max_length=64, learning_rate=1e-2,
                                     lora_target_modules=["q_proj", "v_proj", "up_proj"])
    ex = examples_of(pairs.head(24), Shape("pairs", "prompt", "completion"), tok)
    ids, labels, _ = encode_examples(tok, ex, 64)
    job = GenJob(settings, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:18], labels[:18], ids[18:],
                 labels[18:], 0, "cpu")
    params = params_of(settings)
    whole = run_params(job, params)

    def kill_after_first(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        run_params(job, params, checkpoint=ckpt, on_epoch=kill_after_first)
    assert ckpt.is_file()
    resumed = run_params(job, params, checkpoint=ckpt)
    assert resumed["resumed_from_epoch"] == 1
    assert [h["val_loss"] for h in resumed["history"]] == pytest.approx([h["val_loss"] for h in whole["history"]],
                                                                        abs=1e-4)
    for k, v in whole["weights"].items():
        torch.testing.assert_close(resumed["weights"][k], v, atol=1e-5, rtol=1e-4)


def test_decoding_stops_on_a_stop_string_and_is_seeded(trained):
    m = trained.model
    ids = m.prompt_ids({"prompt": "Where is my order?"})
    full = m.answer(ids, max_new_tokens=12)
    cut = m.answer(ids, max_new_tokens=12, stop=["order"])
    assert "order" in full and cut == full[: full.index("order")]
    assert len(m.tokenizer(m.answer(ids, max_new_tokens=3), add_special_tokens=False)["input_ids"]) <= 4
    a = m.answer(ids, temperature=1.5, top_p=0.9, seed=7)
    assert a == m.answer(ids, temperature=1.5, top_p=0.9, seed=7)
