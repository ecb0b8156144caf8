"""A model trained on cleaned data (impute with an indicator column, text normalisation) is served
from the raw records clients have: the cleaning plan is replayed on each request before the ONNX
graph, the columns the plan adds are never asked for, and the loop (monitor, retrain) sees the
requests cleaned the same way as the training rows."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from servers import running
from toy import make_table

from modelloop.config import parse_config
from modelloop.project import Project
from modelloop.registry import load_model, resolve_model
from modelloop.serving import ServeConfig, create_app
from modelloop.serving.runtime import load_runtime
from modelloop.serving.validation import ValidationProblem

RULES = [{"action": "impute", "columns": ["amount"], "strategy": "median", "indicator": True},
         {"action": "normalize_text", "columns": ["country"], "case": "upper"}]


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("cleaned")
    df = make_table()
    df.loc[::7, "amount"] = np.nan  # enough missing amounts for the indicator to matter
    df.to_csv(root / "data.csv", index=False)
    p = Project(parse_config({"name": "cl", "data": {"source": "data.csv", "target": "y", "id": "tid"},
                              "train": {"cv_folds": 2, "ensemble": False}, "clean": {"rules": RULES}},
                             root=root))
    p.ingest()
    p.clean()
    assert p.train(budget=10, trials=3)["model"]["version"] == 1
    assert "amount__missing" in resolve_model(p.workspace, "cl:1")["input_schema"]["columns"]
    return p


RAW = [{"tid": "a", "amount": None, "age": 30, "country": " us ", "online": True, "signup": "2023-05-01"},
       {"tid": "b", "amount": 250.0, "age": 61, "country": "FR", "online": False, "signup": "2023-09-12"},
       {"tid": "c", "amount": None, "age": 22, "country": None, "online": None, "signup": None}]


def test_runtime_serves_raw_records_through_onnx_with_the_plan_replayed(cleaned):
    ws = cleaned.workspace
    rt = load_runtime(ws)
    assert rt.variant == "onnx", rt.reason  # the check compares like with like: no native fallback
    assert "amount__missing" not in rt.validator.features
    assert set(rt.validator.features) == {"amount", "age", "country", "online", "signup"}
    native = load_model(ws, resolve_model(ws, None))
    want = native.predict_proba(pd.DataFrame(RAW))
    assert np.allclose(rt.scores([dict(r) for r in RAW]), want, atol=1e-4)
    # normalisation is replayed: " us " scores as "US"
    assert np.allclose(rt.scores([{**RAW[0], "country": " us "}]), rt.scores([{**RAW[0], "country": "US"}]))
    with pytest.raises(ValidationProblem, match="amount__missing: unknown field"):
        rt.validator.validate_json(b'{"records": [{"amount": 1, "amount__missing": 0}]}')
    assert rt.describe()["cleaning_plan"]["steps"][0]["op"] == "impute"


def test_http_predict_takes_the_raw_record(cleaned):
    app = create_app(cleaned.workspace, config=ServeConfig(reload_poll_seconds=0))
    with running(app) as url:
        r = httpx.post(f"{url}/v1/predict", json={"records": RAW}, timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 3
        schema = httpx.get(f"{url}/v1/model", timeout=30).json()["input_schema"]["columns"]
        assert "amount__missing" not in schema and "amount" in schema


def test_monitor_and_retrain_clean_the_logged_requests(cleaned, tmp_path):
    ws = cleaned.workspace
    rows, ids = [], []
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    table = make_table(300, seed=5).drop(columns=["y"])
    table.loc[::7, "amount"] = np.nan
    for i, rec in enumerate(table.to_dict(orient="records")):
        rec = {k: (None if isinstance(v, float) and np.isnan(v) else v.item() if isinstance(v, np.generic) else v)
               for k, v in rec.items()}
        rid = uuid.uuid4().hex
        ids.append(rid)
        rows.append({"request_id": rid, "name": "cl", "version": 1,
                     "at": now + dt.timedelta(milliseconds=i), "inputs": rec,
                     "output": {"label": 0, "probabilities": {"0": 0.5, "1": 0.5}}, "latency_ms": 1.0})
    ws.catalog.add_predictions(rows)
    # same distribution as training: the plan-made column must not look drifted
    mon = cleaned.monitor()
    assert "amount__missing" not in mon["drifted_features"]

    from modelloop.feedback.retrain import merge_feedback

    f = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "label": make_table(300, seed=5)["y"]}).to_csv(f, index=False)
    assert cleaned.feedback(str(f))["accepted"] == 300
    merged = merge_feedback(ws, resolve_model(ws, "cl:1"))
    from modelloop.data.ingest import load_dataset
    from modelloop.data.stages import cleaning_plan

    _, df, _ = load_dataset(ws, merged["id"])
    fb = df[df["_origin"] == "feedback"]
    assert fb["amount"].notna().all()                       # imputed like the training rows
    assert fb["amount__missing"].sum() == table["amount"].isna().sum()
    assert cleaning_plan(ws, merged) is not None            # the plan carries on to the new version
