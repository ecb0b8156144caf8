"""CatBoost as a tabular search candidate (issue 27): searched like the other families, exported to ONNX
through CatBoost's own exporter when its features are numeric, and served natively (saying so) when it
encodes categoricals itself, which that exporter cannot; either way the model serves its training rows."""

from __future__ import annotations

import csv
import json

import httpx
import numpy as np
import pandas as pd
import pytest
from servers import predict_all, running

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.errors import ModelloopError
from modelloop.families.tabular.export import check_onnx, to_onnx
from modelloop.families.tabular.model import TabularModel
from modelloop.families.tabular.search import SearchSettings, run_search

pytest.importorskip("catboost")


def _table(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "shop": rng.choice(["s1", "s2", "s3", "s4"], n)})
    X.loc[::11, "a"] = np.nan
    X.loc[::13, "shop"] = None
    signal = X["a"].fillna(0) + 1.5 * X["shop"].isin(["s1", "s3"]) + 0.3 * X["b"]
    return X, pd.Series(np.where(signal + rng.normal(0, 0.5, n) > 0.8, "bad", "good"), name="y")


def test_the_search_runs_catboost_and_its_numeric_model_exports_to_onnx(tmp_path) -> None:
    X, y = _table()
    X = X[["a", "b"]]
    folds = make_folds(pd.DataFrame({"y": y}), strategy="stratified", n_folds=3, seed=0, target="y")
    settings = SearchSettings(task="binary", metric="roc_auc", families=["catboost"], budget=None, n_trials=2,
                              ensemble=False)
    result = run_search(X, y, schema=Schema(columns={"a": "numeric", "b": "numeric"}), folds=folds,
                        settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                        work_dir=tmp_path / "w")
    assert [r.family for r in result.trials] == ["catboost", "catboost"]
    assert result.trials[0].best_iteration and result.validation_score > 0.8
    model = result.model
    assert model.family == "catboost" and set(model.feature_importances()) == {"a", "b"}
    assert check_onnx(model, to_onnx(model), X) <= 1e-4  # NaN included
    for task, target in (("multiclass", pd.cut(X["b"], 3, labels=False)), ("regression", 2 * X["b"] + 1)):
        other = TabularModel(Schema(columns={"a": "numeric", "b": "numeric"}), task, "catboost",
                             {"n_estimators": 30}).fit(X, target)
        assert check_onnx(other, to_onnx(other), X) <= 1e-4, task


def test_a_catboost_model_over_categoricals_serves_its_own_rows_natively_and_says_why(tmp_path) -> None:
    from modelloop.config import parse_config
    from modelloop.data.sources import read_table
    from modelloop.project import Project
    from modelloop.registry import load_model, resolve_model
    from modelloop.serving import ServeConfig, create_app

    X, y = _table()
    X.assign(y=y).to_csv(tmp_path / "data.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    project = Project(parse_config({
        "name": "cb", "data": {"source": "data.csv", "target": "y"},
        "train": {"budget": 20, "trials": 1, "families": ["catboost"], "cv_folds": 2, "ensemble": False,
                  "max_latency_ms": None}}, root=tmp_path))
    project.ingest()
    project.train()
    ws = project.workspace
    model = load_model(ws, resolve_model(ws))
    assert model.family == "catboost" and model.estimator_.named_steps["model"].get_cat_feature_indices()
    with pytest.raises(ModelloopError, match="categorical features"):
        to_onnx(model)
    records = json.loads(pd.read_csv(tmp_path / "data.csv").drop(columns=["y"]).to_json(orient="records"))
    with running(create_app(ws, config=ServeConfig(reload_poll_seconds=0), api_keys=[])) as url:
        info = httpx.get(f"{url}/v1/model", timeout=30).json()
        served = predict_all(url, records)
    assert info["variant"] == "native" and "categorical features" in info["reason"]
    frame, _ = read_table(str(tmp_path / "data.csv"))
    offline = model.predict_proba(frame.drop(columns=["y"]))
    got = np.array([[p["probabilities"][str(c)] for c in model.classes_] for p in served])
    np.testing.assert_allclose(got, offline, atol=1e-6)
