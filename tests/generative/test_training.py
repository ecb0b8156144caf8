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
    settings = GenerativeModelConfig(backbone=str(tiny_llama), epochs=3, max_length=64, learning_rate=1e-2,
                                     lora_target_modules=["q_proj", "v_proj", "up_proj"])
    ex = examples_of(pairs, Shape("pairs", "prompt", "completion"), tok)
    ids, labels, _ = encode_examples(tok, ex, 64)
    job = GenJob(settings, str(tiny_llama), "fp", int(tok.pad_token_id), ids[:40], labels[:40], ids[40:],
                 labels[40:], 0, "cpu")
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


def test_lora_keeps_adapters_only_and_the_merged_network_answers_as_the_adapted_one(tiny_llama, tmp_path, pairs):
    from modelloop.config import parse_config
    from modelloop.project import Project
    from modelloop.registry import load_model

    from gen_toy import gen_config

    pairs.to_json(tmp_path / "qa.jsonl", orient="records", lines=True, force_ascii=False)
    project = Project(parse_config(gen_config(tmp_path, tiny_llama, method="lora", epochs=1, eval_samples=1),
                                   root=tmp_path))
    project.ingest()
    summary = project.train()
    assert summary["generation"]["method"] == "lora" and summary["best_family"] == "lora"
    model = load_model(project.workspace, project.workspace.catalog.get_model("helpdesk", 1))
    from safetensors.torch import load

    weights = load(model.weights_)
    assert weights and all("lora_" in k for k in weights)
    adapted = model._build(merged=False)
    ids = torch.tensor([model.prompt_ids({"prompt": "Can I cancel?"})])
    with torch.no_grad():
        torch.testing.assert_close(model.network()(input_ids=ids).logits, adapted(input_ids=ids).logits,
                                   atol=1e-4, rtol=1e-4)
