"""``modelloop init --example assistant``: bilingual pairs with consistent facts, a config on the bundled
model, and the bundled SmolLM2 fine-tuned on them (slow). The same project on the tiny Llama runs the
whole loop on the command line in ``test_gen_loop.py`` (fast)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from clirun import cli

from modelloop.examples.assistant import generate_assistant, order_status


def test_the_pairs_are_bilingual_and_their_facts_agree():
    df = generate_assistant()
    assert 250 <= len(df) <= 400 and set(df["lang"]) == {"en", "zh"}
    cjk = df["completion"].str.contains(r"[\u4e00-\u9fff]")
    assert (cjk == (df["lang"] == "zh")).all()
    for _, row in df[df["prompt"].str.contains("NW")].iterrows():
        order = re.search(r"NW\d{5}", row["prompt"]).group(0)
        assert order in row["completion"] and order_status(order, row["lang"]) in row["completion"]
    # one answer per question wording: the facts never contradict each other
    stripped = df.assign(q=df["prompt"].str.replace(r"^(Hi, |Hello! |Excuse me, |你好，|您好！|请问)", "", regex=True))
    assert (stripped.groupby(stripped["q"].str.lower())["completion"].nunique() == 1).all()
    assert generate_assistant(seed=0).equals(df)


def test_init_writes_the_data_and_a_config_on_the_bundled_model(tmp_path, capsys):
    code, _, err = cli(["init", "helpdesk", "--example", "assistant"], capsys, tmp_path)
    assert code == 0, err
    root = tmp_path / "helpdesk"
    cfg = yaml.safe_load((root / "modelloop.yaml").read_text())
    assert cfg["task"] == "text_generation" and cfg["model"]["backbone"] == "bundled"
    assert cfg["model"]["method"] == "lora"
    rows = pd.read_json(root / "data" / "assistant.jsonl", lines=True)
    assert list(rows.columns[:2]) == ["prompt", "completion"] and len(rows) == len(generate_assistant())


def _run(root, capsys) -> dict:
    code, out, err = cli(["run", "--json"], capsys, root)
    assert code == 0, err[-3000:]
    return json.loads(out)


@pytest.mark.slow
def test_the_example_fine_tunes_the_bundled_model(tmp_path, capsys):
    """The real thing (~5 min on 2 cores): LoRA on SmolLM2-135M-Instruct lowers the test perplexity."""
    cli(["init", "helpdesk", "--example", "assistant"], capsys, tmp_path)
    summary = _run(tmp_path / "helpdesk", capsys)
    g = summary["generation"]
    assert g["perplexity"] < g["base_perplexity"]
    assert summary["test_metrics"]["chrf"] > g["base_metrics"]["chrf"]
