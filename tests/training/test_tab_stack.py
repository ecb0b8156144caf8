"""Stacking (issue 27): a level-2 model over the best trials' out-of-fold outputs, scored out of fold
itself, kept only when it beats the best single model or greedy blend; exported to one ONNX graph and
served through the same runtime as any tabular model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.data.split import make_folds
from modelloop.families.tabular.ensemble import level2_model, stack_estimator, stack_features
from modelloop.families.tabular.export import check_onnx, to_onnx
from modelloop.families.tabular.model import TabularModel
from modelloop.families.tabular.search import SearchSettings, run_search
from modelloop.families.tabular.serve import variant_runtime
from modelloop.serving.runtime import ONNX_ATOL, served_diff


def _additive(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A weak linear part a linear model gets and trees do not, plus an XOR part only trees get: a sum
    of the two members beats any average of them."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"l{i}": rng.normal(size=n) for i in range(8)})
    X["u"], X["v"] = rng.normal(size=n), rng.normal(size=n)
    y = 0.6 * X[[f"l{i}" for i in range(8)]].sum(axis=1) + 2.5 * np.sign(X["u"] * X["v"]) + rng.normal(0, 0.3, n)
    return X, pd.Series(y, name="y")


def _search(tmp_path, X, y, task: str, metric: str, families: list[str]):
    strategy = "random" if task == "regression" else "stratified"
    folds = make_folds(pd.DataFrame({"y": y}), strategy=strategy, n_folds=3, seed=0, target="y")
    settings = SearchSettings(task=task, metric=metric, families=families, budget=None, n_trials=2)
    return run_search(X, y, schema=Schema(columns={c: "numeric" for c in X.columns}), folds=folds,
                      settings=settings, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s",
                      work_dir=tmp_path / "w")


def test_a_stack_that_beats_the_blend_out_of_fold_is_kept_exported_and_served(tmp_path) -> None:
    X, y = _additive()
    result = _search(tmp_path, X, y, "regression", "rmse", ["linear", "lightgbm"])
    stack = result.ensemble["stack"]
    best = min(t.value for t in result.trials)
    assert stack["kept"] and stack["families"] == ["lightgbm", "linear"] and "better than" in stack["reason"]
    assert result.validation_score == pytest.approx(stack["score"]) and stack["score"] < best
    model = result.model
    assert model.family == "stacked" and model.describe()["stacked"] == {"level2": "LinearRegression"}
    # the served answer is the stack's own: not either member's
    members = model.estimator_.estimators_
    prepared = model._prepare(X)
    assert all(np.abs(m.predict(prepared) - model.predict(X)).max() > 0.1 for m in members)
    onnx = to_onnx(model)
    assert check_onnx(model, onnx, X) <= ONNX_ATOL
    assert served_diff(variant_runtime(model, onnx.SerializeToString()), model, X) <= ONNX_ATOL


def test_a_stack_that_does_not_beat_the_blend_is_reported_and_dropped(tmp_path) -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=240), "b": rng.normal(size=240)})
    y = pd.Series((X["a"] + rng.normal(0, 0.3, 240) > 0).astype(int), name="y")  # one member is enough
    result = _search(tmp_path, X, y, "binary", "roc_auc", ["linear", "lightgbm"])
    stack = result.ensemble["stack"]
    assert not stack["kept"] and "no better than" in stack["reason"] and stack["score"] <= stack["to_beat"]
    assert result.model.family != "stacked"


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_classifier_stack_converts_to_one_onnx_graph(task) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200),
                      "c": rng.choice(["x", "y", None], 200)})
    schema = Schema(columns={"a": "numeric", "b": "numeric", "c": "categorical"})
    y = (X["a"] > 0).astype(int) + ((X["b"] > 0.5) if task == "multiclass" else 0)
    members = [TabularModel(schema, task, f, {"n_estimators": 20} if f != "linear" else {}).fit(X, y)
               for f in ("lightgbm", "linear")]
    prepared = members[0]._prepare(X)
    level2 = level2_model(task).fit(
        stack_features([m.estimator_.predict_proba(prepared) for m in members], task), y)
    estimator = stack_estimator([m.estimator_ for m in members], level2, task=task, n_classes=y.nunique())
    model = TabularModel.from_fitted(schema=schema, task=task, classes=members[0].classes_, estimator=estimator)
    assert check_onnx(model, to_onnx(model), X) <= ONNX_ATOL
