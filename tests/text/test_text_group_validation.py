"""With data.group the text stage's validation rows (early stopping, the search's choice) are whole groups:
a customer's reviews on both sides of it scored the model on customers it trained on."""

from __future__ import annotations

import pytest

from modelloop.families.text import stage


class _Stop(Exception):
    pass


def test_validation_rows_keep_each_customer_on_one_side(tmp_path, tiny_backbone, texts, monkeypatch):
    from modelloop.config import parse_config
    from modelloop.data.ingest import ingest
    from modelloop.workspace import Workspace

    data = texts.assign(customer=[f"c{i % 18}" for i in range(len(texts))])  # 5 reviews a customer
    data.to_json(tmp_path / "data.jsonl", orient="records", lines=True, force_ascii=False)
    cfg = parse_config({"name": "intents", "task": "text_classification",
                        "data": {"source": "data.jsonl", "target": "intent", "text": "message", "group": "customer"},
                        "train": {"budget": 60}, "model": {"backbone": str(tiny_backbone), "method": "head"}},
                       root=tmp_path)
    ws = Workspace(cfg)
    ingest(ws)
    seen = {}

    def capture(settings, parts, text, root):
        seen.update(parts)
        raise _Stop

    monkeypatch.setattr(stage, "_choose", capture)
    with pytest.raises(_Stop):
        stage.train_text(ws)
    fit, val = set(seen["fit"]["customer"]), set(seen["val"]["customer"])
    assert fit and val and not fit & val  # drawn by rows, most customers had reviews on both sides
    assert set(seen["train"]["customer"]) == fit | val
    assert stage.text_study_name(ws, "v1").endswith("-gv")  # a study of row-drawn validation is not resumed
