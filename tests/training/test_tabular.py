"""Tabular model contract: feature preparation, every family x task, class weights, pickling."""

from __future__ import annotations

import json
import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.errors import DataError, StateError
from modelloop.families.tabular.model import (
    FAMILIES,
    TabularModel,
    build_estimator,
    encode_labels,
    prepare_features,
    prepared_columns,
)

TASKS = ("binary", "multiclass", "regression")


def _frame(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, Schema, dict[str, pd.Series]]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": np.arange(n),
        "num": rng.normal(size=n),
        "gap": np.where(rng.random(n) < 0.15, np.nan, rng.normal(size=n)),
        "color": rng.choice(["red", "green", "blue", None], size=n),
        "flag": rng.random(n) < 0.5,
        "when": pd.date_range("2021-03-01", periods=n, freq="7h").astype(str),
    })
    signal = df["num"] + 1.5 * (df["color"] == "red") + 0.7 * df["flag"]
    targets = {
        "binary": pd.Series(np.where(signal > 0.4, "yes", "no")),
        "multiclass": pd.Series(pd.cut(signal, 3, labels=["low", "mid", "high"]).astype(str)),
        "regression": signal + rng.normal(scale=0.1, size=n),
    }
    schema = Schema(columns={"id": "identifier", "num": "numeric", "gap": "numeric",
                             "color": "categorical", "flag": "boolean", "when": "datetime",
                             "target": "categorical"}, target="target", id="id")
    return df, schema, targets


# --------------------------------------------------------------------------- prepare_features
def test_prepare_features_maps_every_kind():
    df = pd.DataFrame({
        "n": ["1.5", "x", None],
        "c": ["a", None, ""],
        "b": ["yes", "False", None],
        "d": ["2024-02-29 13:00", "junk", None],
        "ignored": [1, 2, 3],
    })
    schema = Schema(columns={"n": "numeric", "c": "categorical", "b": "boolean", "d": "datetime",
                             "ignored": "text"})
    out = prepare_features(df, schema)
    numeric, categorical = prepared_columns(schema)
    assert list(out.columns) == ["n", "c", "b"] + [f"d__{p}" for p in
                                                  ("year", "month", "day", "dayofweek", "hour", "epoch")]
    assert set(numeric + categorical) == set(out.columns)
    assert out["n"].dtype == np.float64 and out["n"].iloc[0] == 1.5 and np.isnan(out["n"].iloc[1])
    assert out["c"].dtype == object and out["c"].iloc[0] == "a"
    assert pd.isna(out["c"].iloc[1]) and pd.isna(out["c"].iloc[2])    # None and "" are missing
    assert out["b"].tolist()[:2] == [1.0, 0.0] and np.isnan(out["b"].iloc[2])
    row = out.iloc[0]
    assert (row["d__year"], row["d__month"], row["d__day"], row["d__hour"]) == (2024, 2, 29, 13)
    assert row["d__dayofweek"] == 3  # a Thursday
    assert row["d__epoch"] == pd.Timestamp("2024-02-29 13:00").timestamp()
    assert out.iloc[1:][[c for c in out.columns if c.startswith("d__")]].isna().all().all()
    assert all(out[c].dtype == np.float64 for c in numeric)


def test_prepare_features_native_dtypes_and_arrow_strings():
    df = pd.DataFrame({"b": [True, False], "c": pd.Series(["x", None], dtype="str"),
                       "d": pd.to_datetime(["2020-01-01T00:00:00Z", "2020-06-01T12:00:00Z"])})
    schema = Schema(columns={"b": "boolean", "c": "categorical", "d": "datetime"})
    out = prepare_features(df, schema)
    assert out["b"].tolist() == [1.0, 0.0]
    assert out["c"].dtype == object and out["c"].iloc[0] == "x" and pd.isna(out["c"].iloc[1])
    assert out["d__hour"].tolist() == [0.0, 12.0]


def test_datetimes_in_mixed_spellings_all_parse():
    """A CSV's ``2024-03-02 00:53:31`` next to logged requests' ``2024-06-14T02:29:54`` (what retrain
    merges): pandas' default parse infers one format and made the second NaT."""
    schema = Schema(columns={"d": "datetime"})
    values = ["2024-03-02 00:53:31", "2024-06-14T02:29:54", "2024-01-01", "2024-02-29T23:59:59.250",
              "03/05/2024 08:55", None, "", "not a date"]
    out = prepare_features(pd.DataFrame({"d": values}), schema)
    assert out["d__hour"].tolist()[:5] == [0.0, 2.0, 0.0, 23.0, 8.0]
    assert out["d__day"].tolist()[:5] == [2.0, 14.0, 1.0, 29.0, 5.0]
    assert out.iloc[5:].isna().all().all()


def test_prepare_features_missing_column_names_it():
    _, schema, _ = _frame(10)
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['color'\].*expects columns"):
        prepare_features(pd.DataFrame({"num": [1.0], "gap": [1.0], "flag": [True], "when": ["2020"]}),
                         schema)


def test_encode_labels_sorted_classes_and_missing_target():
    idx, classes = encode_labels(pd.Series(["yes", "no", "yes"]), "binary")
    assert classes == ["no", "yes"] and idx.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="missing value"):
        encode_labels(pd.Series(["a", None]), "binary")
    with pytest.raises(DataError, match="mixes value types"):
        encode_labels(pd.Series([1, "a"], dtype=object), "binary")


# --------------------------------------------------------------------------- every family x task
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_fit_predict_shapes_labels_and_unseen_categories(family, task):
    df, schema, targets = _frame()
    y = targets[task]
    model = TabularModel(schema, task, family, {"n_estimators": 40} if family != "linear" else {}).fit(df, y)
    test = df.head(30).copy()
    test.loc[:9, "color"] = "purple"          # never seen in training
    test.loc[10:14, "when"] = None
    pred = model.predict(test)
    assert pred.shape == (30,)
    if task == "regression":
        assert model.classes_ is None and pred.dtype == float
        with pytest.raises(StateError):
            model.predict_proba(test)
        assert np.corrcoef(model.predict(df), y)[0, 1] > 0.8
    else:
        proba = model.predict_proba(test)
        assert proba.shape == (30, len(model.classes_))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        assert set(pred) <= set(y) and model.classes_ == sorted(set(y))
        assert (model.predict(df) == y.to_numpy()).mean() > 0.7
    json.dumps(model.describe())


def test_not_fitted_raises_state_error():
    _, schema, _ = _frame(10)
    with pytest.raises(StateError, match="not fitted"):
        TabularModel(schema).predict(pd.DataFrame())


@pytest.mark.parametrize("family", FAMILIES)
def test_balanced_class_weight_raises_minority_recall(family):
    rng = np.random.default_rng(1)
    n = 600
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = pd.Series((X["a"] + rng.normal(scale=1.2, size=n) > 2.2).astype(int))   # ~5% positives
    schema = Schema(columns={"a": "numeric", "b": "numeric"})
    params = {"n_estimators": 30} if family != "linear" else {}
    recall = {}
    for weight in ("balanced", "none"):
        model = TabularModel(schema, "binary", family, params, class_weight=weight).fit(X, y)
        recall[weight] = (model.predict(X)[y == 1] == 1).mean()
    assert recall["balanced"] > recall["none"]


def test_build_estimator_passes_class_weight():
    pipe = build_estimator("lightgbm", {}, task="binary", numeric_cols=["a"], categorical_cols=["c"])
    assert pipe.named_steps["model"].class_weight == "balanced"
    assert pipe.named_steps["model"].n_jobs == 1
    pipe = build_estimator("linear", {}, task="binary", numeric_cols=["a"], categorical_cols=[],
                           class_weight="none")
    assert pipe.named_steps["model"].class_weight is None


def test_feature_importances_map_back_to_raw_columns():
    df, schema, targets = _frame()
    model = TabularModel(schema, "binary", "lightgbm", {"n_estimators": 40}).fit(df, targets["binary"])
    imp = model.feature_importances()
    assert set(imp) <= {"num", "gap", "color", "flag", "when"} and "num" in imp and "color" in imp
    assert abs(sum(imp.values()) - 1.0) < 1e-9
    assert max(imp, key=imp.get) == "num"
    linear = TabularModel(schema, "binary", "linear").fit(df, targets["binary"])
    assert linear.feature_importances() == {}


@pytest.mark.parametrize("family", FAMILIES)
def test_pickle_round_trip_predicts_identically(family):
    df, schema, targets = _frame()
    model = TabularModel(schema, "multiclass", family, {"n_estimators": 20} if family != "linear" else {})
    model.fit(df, targets["multiclass"])
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        again = loads(dumps(model))
        np.testing.assert_array_equal(again.predict_proba(df), model.predict_proba(df))
        np.testing.assert_array_equal(again.predict(df), model.predict(df))


def test_a_model_pickled_before_the_family_moved_still_loads():
    """Registered tabular models name ``modelloop.models.tabular.TabularModel``; that path still resolves."""
    X, schema, ys = _frame()
    model = TabularModel(schema=schema, task="binary", family="linear").fit(X, ys["binary"])
    blob = pickle.dumps(model, protocol=0)  # protocol 0 names the class as text, one line
    old = blob.replace(b"cmodelloop.families.tabular.model\nTabularModel\n", b"cmodelloop.models.tabular\nTabularModel\n")
    assert old != blob
    np.testing.assert_allclose(pickle.loads(old).predict_proba(X), model.predict_proba(X))
