"""ONNX export: every family x task and both ensembles match scikit-learn within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.errors import ModelloopError
from modelloop.families.tabular.model import FAMILIES, TabularModel
from modelloop.families.tabular.export import INPUT_COLUMNS_KEY, check_onnx, onnx_inputs, to_onnx
from modelloop.families.tabular.ensemble import blend_estimator

# this table has categoricals, which CatBoost's ONNX exporter cannot take: tests/training/test_tab_catboost.py
EXPORTED = [f for f in FAMILIES if f != "catboost"]


def _data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, Schema, dict[str, pd.Series]]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount usd": rng.gamma(2.0, 30.0, size=n),                       # a name ONNX renames
        "gap": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "city": rng.choice(["oslo", "lima", "pune", "rare", None], size=n, p=[.3, .3, .3, .02, .08]),
        "shop": rng.choice(["a", "b"], size=n),
        "member": rng.random(n) < 0.4,
        "seen": pd.date_range("2022-01-01", periods=n, freq="5h").astype(str),
    })
    signal = df["amount usd"] / 60 + (df["city"] == "oslo") + 0.5 * df["member"] - df["gap"].fillna(0)
    targets = {
        "binary": pd.Series(np.where(signal > 1.6, "fraud", "ok")),
        "multiclass": pd.Series(pd.qcut(signal, 3, labels=["a", "b", "c"]).astype(str)),
        "regression": signal,
    }
    schema = Schema(columns={"amount usd": "numeric", "gap": "numeric", "city": "categorical",
                             "shop": "categorical", "member": "boolean", "seen": "datetime"})
    return df, schema, targets


def _probe(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with unseen categories and missing values of every kind."""
    probe = df.head(40).copy()
    probe["member"] = probe["member"].astype(object)     # pandas 3 will not put None in a bool column
    probe.loc[:4, "city"] = "atlantis"
    probe.loc[5:9, "city"] = None
    probe.loc[10:12, "member"] = None
    probe.loc[13:15, "seen"] = None
    return probe


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", EXPORTED)
def test_each_family_matches_onnx(family, task):
    df, schema, targets = _data()
    params = {"n_estimators": 40} if family != "linear" else {"min_frequency": 5}
    model = TabularModel(schema, task, family, params).fit(df, targets[task])
    onx = to_onnx(model)
    assert check_onnx(model, onx, _probe(df), atol=1e-4) <= 1e-4
    assert check_onnx(model, onx, df, atol=1e-4) <= 1e-4


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_soft_voting_ensemble_matches_onnx(task):
    df, schema, targets = _data()
    members = [TabularModel(schema, task, f, {"n_estimators": 30} if f != "linear" else {})
               .fit(df, targets[task]) for f in EXPORTED]
    first = members[0]
    blended = blend_estimator([m.estimator_ for m in members], [0.5, 0.3, 0.2], task=task,
                              n_classes=len(first.classes_ or []))
    model = TabularModel.from_fitted(schema=schema, task=task, classes=first.classes_, estimator=blended,
                                     threshold=0.4 if task == "binary" else None)
    onx = to_onnx(model)
    assert check_onnx(model, onx, _probe(df), atol=1e-4) <= 1e-4


def test_graph_contract_inputs_outputs_and_metadata():
    df, schema, targets = _data()
    model = TabularModel(schema, "binary", "lightgbm", {"n_estimators": 10}).fit(df, targets["binary"])
    onx = to_onnx(model)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    mapping = json.loads({p.key: p.value for p in onx.metadata_props}[INPUT_COLUMNS_KEY])
    assert list(mapping.values())[:3] == ["amount usd", "gap", "member"]
    assert list(mapping) == names and "amount usd" not in names     # skl2onnx renamed it
    types = {i.name: i.type for i in session.get_inputs()}
    assert types[names[0]] == "tensor(float)" and types[names[-1]] == "tensor(string)"
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    feed = onnx_inputs(model, _probe(df), names)
    label, proba = session.run(None, feed)
    assert proba.shape == (40, 2) and label.shape == (40,)
    assert feed[mapping_key(mapping, "city")][5, 0] == ""                  # missing -> ""


def mapping_key(mapping: dict[str, str], column: str) -> str:
    return next(k for k, v in mapping.items() if v == column)


def test_check_onnx_raises_on_mismatch():
    df, schema, targets = _data()
    model = TabularModel(schema, "binary", "linear").fit(df, targets["binary"])
    other = TabularModel(schema, "binary", "linear", {"C": 0.001}).fit(df, targets["binary"])
    with pytest.raises(ModelloopError, match="ONNX output differs"):
        check_onnx(model, to_onnx(other), df, atol=1e-4)
