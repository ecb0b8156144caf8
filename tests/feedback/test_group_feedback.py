"""data.group through the loop: the frozen test split holds whole groups, and a feedback row of a group on
the test side joins the test side at retrain instead of teaching the challenger the group it is scored on."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pandas as pd

from modelloop import Project, parse_config
from modelloop.data.ingest import split_key
from modelloop.data.snapshot import ROW_ID
from modelloop.registry import load_model, resolve_model


def _cards(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    card = rng.integers(0, 60, n)
    x1 = rng.normal(size=n) + (card % 3 == 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x1 - 1)))).astype(int)
    return pd.DataFrame({"x1": x1, "card": [f"card{c:02d}" for c in card], "y": y})


def _serve_and_label(p: Project, df: pd.DataFrame, tmp_path) -> None:
    """What the server logs for each request (production's answer), then the labels of them all."""
    ws = p.workspace
    row = resolve_model(ws)
    model = load_model(ws, row)
    X = df.drop(columns=["y"])
    labels = model.predict(X)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ids = [uuid.uuid4().hex for _ in range(len(df))]
    ws.catalog.add_predictions([{"request_id": rid, "name": row["name"], "version": row["version"],
                                 "at": now + dt.timedelta(milliseconds=i), "inputs": rec,
                                 "output": {"label": int(labels[i])}, "latency_ms": 1.0}
                                for i, (rid, rec) in enumerate(zip(ids, json.loads(X.to_json(orient="records")),
                                                                   strict=True))])
    f = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "label": df["y"]}).to_csv(f, index=False)
    p.feedback(str(f))


def _sides(p: Project, dataset: dict) -> pd.DataFrame:
    from modelloop.data.ingest import load_dataset

    ws = p.workspace
    _, df, _ = load_dataset(ws, dataset["id"])
    split = pd.read_parquet(ws.catalog.get_split(dataset["id"], split_key(ws.config))["path"])
    return df.merge(split, on=ROW_ID)


def test_feedback_of_a_test_group_is_tested_not_trained_on(tmp_path):
    _cards(900, 0).to_csv(tmp_path / "d.csv", index=False)
    raw = {"name": "cards", "task": "classification",
           "data": {"source": "d.csv", "target": "y", "group": "card", "columns": {"card": "categorical"}},
           "train": {"trials": 2, "cv_folds": 2, "families": ["linear"], "ensemble": False, "stack": False},
           "retrain": {"min_new_labels": 10}}
    p = Project(parse_config(raw, root=tmp_path))
    p.run()
    first = p.status()["datasets"][0]
    frozen = _sides(p, first)
    test_cards = set(frozen["card"][frozen["split"] == "test"])
    assert test_cards and not test_cards & set(frozen["card"][frozen["split"] == "train"])
    settings = p.workspace.catalog.get_split(first["id"], split_key(p.workspace.config))["settings"]
    assert settings["groups"] == {"column": "card", "train": 60 - len(test_cards), "test": len(test_cards), "both": 0}

    _serve_and_label(p, _cards(300, 1), tmp_path)
    res = p.retrain()
    merged = _sides(p, p.status()["datasets"][-1])
    new = merged[merged["_origin"] == "feedback"]
    of_test_cards = new[new["card"].isin(test_cards)]
    assert len(of_test_cards) and set(of_test_cards["split"]) <= {"test", "recent"}
    assert "test" in set(of_test_cards["split"])
    trained = merged[merged["split"] == "train"]
    assert not set(trained["card"]) & test_cards  # the challenger learnt no test card
    assert res["rows"]["holdout"] == int((frozen["split"] == "test").sum()) + int((of_test_cards["split"] == "test").sum())
    stored = p.workspace.catalog.get_split(p.status()["datasets"][-1]["id"], split_key(p.workspace.config))
    assert stored["settings"]["feedback_to_test"] == int((of_test_cards["split"] == "test").sum())
