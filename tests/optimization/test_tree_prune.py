"""Pruning boosted rounds: the pruned model is the library's own prefix, agrees, exports, and is smaller."""

from __future__ import annotations

import numpy as np
import pytest

from modelloop.families.tabular.model import TabularModel
from modelloop.families.tabular.export import check_onnx, to_onnx
from modelloop.families.tabular.prune import NothingToPrune, boosted_trees, prune_rounds
from modelloop.families.tabular.ensemble import blend_estimator

from test_export import _data, _probe  # tests/optimization is on sys.path (pytest prepend mode)


def _fit(family: str, task: str, n_estimators: int = 200):
    df, schema, targets = _data(600)
    params = {"n_estimators": n_estimators, "learning_rate": 0.3}
    return TabularModel(schema, task, family, params).fit(df, targets[task]), df


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_pruned_model_is_the_first_rounds_of_the_full_one(family, task):
    model, df = _fit(family, task)
    pruned, info = prune_rounds(model, df, min_fidelity=0.98)
    ((full_leaf, rounds),) = boosted_trees(model.estimator_)
    ((leaf, kept),) = boosted_trees(pruned.estimator_)
    assert rounds == 200 and kept == info["trees_after"] < 200  # the teacher is untouched
    assert info["fidelity"] >= 0.98 and info["tried"][-1]["share"] == info["share"]
    X = model.estimator_[:-1].transform(model._prepare(df))
    if family == "xgboost":
        want = (full_leaf.predict(X, iteration_range=(0, kept)) if task == "regression"
                else full_leaf.predict_proba(X, iteration_range=(0, kept)))
    else:
        want = (full_leaf.predict(X, num_iteration=kept) if task == "regression"
                else full_leaf.predict_proba(X, num_iteration=kept))
    got = leaf.predict(X) if task == "regression" else leaf.predict_proba(X)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the pruned model exports to ONNX like any tree model
    assert check_onnx(pruned, to_onnx(pruned), _probe(df), atol=1e-4) <= 1e-4


def test_blend_members_are_pruned_alike_and_the_threshold_keeps_the_alert_rate():
    a, df = _fit("xgboost", "binary")
    b, _ = _fit("lightgbm", "binary", 150)
    schema = a.schema
    blend = TabularModel.from_fitted(schema=schema, task="binary", classes=a.classes_,
                                     estimator=blend_estimator([a.estimator_, b.estimator_], [0.5, 0.5],
                                                               task="binary", n_classes=2),
                                     threshold=0.4)
    pruned, info = prune_rounds(blend, df, min_fidelity=0.97)
    assert info["trees_before"] == 350 and [r for _, r in boosted_trees(pruned.estimator_)] == [
        int(np.ceil(200 * info["share"])), int(np.ceil(150 * info["share"]))]
    assert [r for _, r in boosted_trees(blend.estimator_)] == [200, 150]
    flagged = np.mean(blend.predict_proba(df)[:, 1] >= 0.4)
    assert pruned.threshold_ != 0.4  # re-matched, so the pruned model flags about as many rows
    assert abs(np.mean(pruned.predict_proba(df)[:, 1] >= pruned.threshold_) - flagged) <= 0.01
    assert pruned.describe()["pruned"]["trees_after"] == info["trees_after"]


def test_nothing_to_prune():
    df, schema, targets = _data()
    linear = TabularModel(schema, "binary", "linear").fit(df, targets["binary"])
    with pytest.raises(NothingToPrune, match="no boosted trees"):
        prune_rounds(linear, df, min_fidelity=0.99)
    model, df = _fit("xgboost", "binary", 30)
    with pytest.raises(NothingToPrune, match="best agreement"):
        prune_rounds(model, df, min_fidelity=1.01)
