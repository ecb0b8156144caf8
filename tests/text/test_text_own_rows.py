"""Contract: a served text model takes the rows of the file it was trained on (the bundled intents and
sentiment examples, every column a client has, ``lang`` included) and scores them as offline
prediction does. The tabular half, and why, is ``tests/serving/test_own_rows.py``; the tiny
backbone stands in for the bundled MiniLM (``conftest.py``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from servers import predict_all, running

from modelloop.serving import ServeConfig, create_app


@pytest.mark.parametrize("example", ["intents", "sentiment"])
def test_a_text_example_serves_its_own_rows(tmp_path, tiny_backbone, example) -> None:
    from modelloop.config import load_config
    from modelloop.data.ingest import ingest
    from modelloop.registry import load_model, resolve_model
    from modelloop.scaffold import init_project
    from modelloop.families.text.stage import train_text
    from modelloop.workspace import Workspace

    init_project(tmp_path, example=example)
    raw = yaml.safe_load((tmp_path / "modelloop.yaml").read_text(encoding="utf-8"))
    raw["model"]["backbone"] = str(tiny_backbone)
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ws = Workspace(load_config(tmp_path / "modelloop.yaml"))
    ingest(ws)
    train_text(ws)

    target, rows = raw["data"]["target"], pd.read_json(tmp_path / raw["data"]["source"], lines=True)
    assert sorted(ws.catalog.get_model(raw["name"], 1)["info"]["classes"]) == sorted(rows[target].unique())
    records = json.loads(rows.drop(columns=[target]).to_json(orient="records", force_ascii=False))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        served = predict_all(url, records)
    model = load_model(ws, resolve_model(ws))
    offline = model.predict_proba(rows.drop(columns=[target]))
    got = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in served])
    np.testing.assert_allclose(got, offline, atol=1e-4)
