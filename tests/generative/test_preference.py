"""Preference pairs (prompt, chosen, rejected) learned by DPO on LoRA adapters against the frozen base: the
shape is found from the column names, the pairs stay aligned when encoded, training widens the chosen
answers' log-probability margin over the rejected ones, and ``modelloop train`` takes such data as it is."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from clirun import cli
from gen_toy import FACTS

from modelloop.errors import ConfigError
from modelloop.families.generative.config import GenerativeModelConfig
from modelloop.families.generative.data import detect_shape
from modelloop.families.generative.fit import GenJob, network_for, params_of, run_params
from modelloop.families.generative.preference import PreferencePairs, encode_preferences, preference_figures


def make_preferences(n: int) -> pd.DataFrame:
    """Each fact's right answer chosen over the next fact's answer."""
    rows = []
    for i in range(n):
        q, right = FACTS[i % len(FACTS)]
        rows.append(
            {
                "prompt": ["", "Hi, ", "请问"][i % 3] + q,
                "chosen": right,
                "rejected": FACTS[(i + 1) % len(FACTS)][1],
            }
        )
    return pd.DataFrame(rows)


def test_prompt_chosen_rejected_columns_are_preference_pairs():
    shape = detect_shape(None, ["prompt", "chosen", "rejected"])
    assert (shape.kind, shape.prompt, shape.completion, shape.rejected) == (
        "preference",
        "prompt",
        "chosen",
        "rejected",
    )
    assert shape.input_columns() == ["prompt"] and shape.answer_column() == "chosen"
    renamed = detect_shape(type("D", (), {"prompt": "question"})(), ["question", "chosen", "rejected"])
    assert renamed.prompt == "question"
    with pytest.raises(ConfigError, match="data.prompt"):
        detect_shape(None, ["query", "chosen", "rejected"])


def test_pairs_stay_aligned_and_a_pair_missing_an_answer_is_left_out(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    frame = make_preferences(6)
    frame.loc[2, "rejected"] = ""
    shape = detect_shape(None, list(frame.columns))
    ids, labels, rej_ids, rej_labels, _ = encode_preferences(tok, frame, shape, 64)
    assert len(ids) == len(rej_ids) == 5
    for i, row in zip(range(5), [0, 1, 3, 4, 5], strict=True):
        chosen = tok.decode([t for t, lab in zip(ids[i], labels[i], strict=True) if lab != -100])
        rejected = tok.decode([t for t, lab in zip(rej_ids[i], rej_labels[i], strict=True) if lab != -100])
        assert chosen.startswith(frame["chosen"][row]) and rejected.startswith(frame["rejected"][row])
        prompt = [t for t, lab in zip(ids[i], labels[i], strict=True) if lab == -100]
        assert prompt == [t for t, lab in zip(rej_ids[i], rej_labels[i], strict=True) if lab == -100]


def test_dpo_on_lora_adapters_widens_the_chosen_answers_margin(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    frame = make_preferences(24)
    shape = detect_shape(None, list(frame.columns))
    ids, labels, rej_ids, rej_labels, _ = encode_preferences(tok, frame, shape, 64)
    settings = GenerativeModelConfig(
        backbone=str(tiny_llama),
        method="lora",
        epochs=6,
        batch_size=4,
        learning_rate=2e-2,
        early_stopping_patience=6,
        warmup_ratio=0.0,
        lora_target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
    )
    job = GenJob(
        settings,
        str(tiny_llama),
        "fp",
        int(tok.pad_token_id),
        ids[:18],
        labels[:18],
        ids[18:],
        labels[18:],
        0,
        "cpu",
        PreferencePairs(rej_ids[:18], rej_labels[:18], rej_ids[18:], rej_labels[18:]),
    )
    params = params_of(settings)
    result = run_params(job, params)
    history = result["history"]
    assert history[0]["val_loss"] > result["value"], history  # the DPO loss fell from log 2
    assert history[-1]["val_margin"] > 0.5 and history[-1]["val_reward_accuracy"] > 0.8, history

    # the kept adapters on the untouched base: the chosen answers gained over the rejected ones
    tuned = network_for(job, params)
    for name, p in tuned.named_parameters():
        if name in result["weights"]:
            p.data.copy_(result["weights"][name])
    base = network_for(job, params)  # fresh adapters start at zero: the base model itself
    figures = preference_figures(tuned, base, frame, shape, tok, 64, int(tok.pad_token_id))
    assert figures["pairs"] == 24 and figures["reward_accuracy"] > 0.8, figures
    assert figures["margin"] > figures["base_margin"] + 0.5, figures


def test_modelloop_train_learns_preference_pairs_by_dpo(tmp_path, capsys, tiny_llama):
    make_preferences(36).to_json(tmp_path / "prefs.jsonl", orient="records", lines=True, force_ascii=False)
    raw = {
        "name": "prefs",
        "task": "text_generation",
        "data": {"source": "prefs.jsonl", "target": "chosen"},
        "split": {"strategy": "random"},
        "train": {"budget": 120},
        "model": {
            "backbone": str(tiny_llama),
            "method": "lora",
            "epochs": 4,
            "batch_size": 4,
            "learning_rate": 2e-2,
            "dpo_beta": 0.2,
            "max_length": 64,
            "eval_samples": 2,
            "max_new_tokens": 8,
            "lora_target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"],
        },
    }
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert cli(["ingest"], capsys, tmp_path)[0] == 0
    code, out, err = cli(["train", "--json"], capsys, tmp_path)
    assert code == 0, err[-3000:]
    g = json.loads(out)["generation"]
    assert g["shape"] == "preference" and g["objective"] == "dpo"
    p = g["preference"]
    assert p["pairs"] > 0 and p["margin"] > p["base_margin"] and p["reward_accuracy"] > 0.5, p
