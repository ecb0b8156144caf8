"""Compacted ONNX graphs (families/tabular/fuse.py): a bagged ensemble's fold models share one copy of
their preprocessing and one tree node per kind of split, and the graph scores exactly as the unfused one."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from modelloop.data.schema import Schema
from modelloop.families.tabular.ensemble import blend_estimator
from modelloop.families.tabular.export import check_onnx, onnx_inputs, to_onnx
from modelloop.families.tabular.model import TabularModel

FOLDS = 3


def _data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, Schema, dict[str, pd.Series]]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "amount": rng.gamma(2.0, 30.0, size=n),
        "gap": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "city": rng.choice(["oslo", "lima", "pune", None], size=n, p=[.3, .3, .3, .1]),
        "shop": rng.choice(["a", "b", "c"], size=n),
    })
    signal = df["amount"] / 60 + (df["city"] == "oslo") - df["gap"].fillna(0) + (df["shop"] == "c")
    targets = {"binary": pd.Series(np.where(signal > 1.8, "fraud", "ok")),
               "multiclass": pd.Series(pd.qcut(signal, 3, labels=["a", "b", "c"]).astype(str)),
               "regression": signal}
    schema = Schema(columns={"amount": "numeric", "gap": "numeric", "city": "categorical", "shop": "categorical"})
    return df, schema, targets


def _probe(df: pd.DataFrame) -> pd.DataFrame:
    probe = df.head(60).copy()
    probe.loc[:4, "city"] = "atlantis"      # unseen
    probe.loc[5:9, "shop"] = None           # missing
    probe.loc[10:12, "amount"] = np.nan
    return probe


def _bagged(task: str, families: tuple[str, ...] = ("xgboost", "lightgbm"), drop_city: str | None = None,
            ) -> tuple[TabularModel, pd.DataFrame]:
    """What ``search._bagged`` serves: each member's k fold pipelines, the member's weight split over them."""
    df, schema, targets = _data()
    y = targets[task]
    folds = np.arange(len(df)) % FOLDS
    pipes, weights = [], []
    for family, member_weight in zip(families, (0.6, 0.3, 0.1), strict=False):
        for k in range(FOLDS):
            rows = df[folds != k]
            if drop_city is not None and k == 0:  # a fold whose training part never saw this category
                rows = rows[rows["city"] != drop_city]
            params = {"n_estimators": 15} if family != "linear" else {}
            pipes.append(TabularModel(schema, task, family, params).fit(rows, y.loc[rows.index]).estimator_)
            weights.append(member_weight / FOLDS)
    first = TabularModel(schema, task, families[0], {"n_estimators": 2}).fit(df, y)
    estimator = blend_estimator(pipes, weights, task=task, n_classes=len(first.classes_ or []))
    model = TabularModel.from_fitted(schema=schema, task=task, classes=first.classes_, estimator=estimator,
                                     threshold=0.4 if task == "binary" else None)
    return model, df


def _scores(model: TabularModel, onx, X: pd.DataFrame) -> np.ndarray:
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, onnx_inputs(model, model.clean_inputs(X), names))
    return np.asarray(out[0] if model.task == "regression" else out[1], dtype=np.float64)


def _unfused(model: TabularModel):
    return to_onnx(model, compact=False)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_bagged_ensemble_is_one_tree_node_per_split_kind_and_scores_as_unfused(task) -> None:
    model, df = _bagged(task)
    plain, fused = _unfused(model), to_onnx(model)
    before = Counter(n.op_type for n in plain.graph.node)
    after = Counter(n.op_type for n in fused.graph.node)
    tree_op = "TreeEnsembleRegressor" if task == "regression" else "TreeEnsembleClassifier"
    assert before[tree_op] == 2 * FOLDS
    # XGBoost's trees split with '<', LightGBM's with '<=' and '==': one node each, no member node left
    assert after["TreeEnsembleRegressor"] == 2 and after["TreeEnsembleClassifier"] == 0
    # the fold pipelines' identical preprocessing is kept once: one encoder per categorical column
    assert before["LabelEncoder"] == 2 * 2 * FOLDS and after["LabelEncoder"] == 2
    assert len(fused.graph.node) <= len(plain.graph.node) / 3
    for X in (_probe(df), df):
        np.testing.assert_allclose(_scores(model, fused, X), _scores(model, plain, X), rtol=0, atol=1e-5)
        assert check_onnx(model, fused, X, atol=1e-5) <= 1e-5
    assert [o.name for o in fused.graph.output] == [o.name for o in plain.graph.output]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_linear_member_is_kept_beside_the_fused_trees(task) -> None:
    model, df = _bagged(task, families=("xgboost", "lightgbm", "linear"))
    plain, fused = _unfused(model), to_onnx(model)
    ops = Counter(n.op_type for n in fused.graph.node)
    assert ops["TreeEnsembleRegressor"] == 2 and ops["TreeEnsembleClassifier"] == 0
    assert ops["LinearClassifier" if task != "regression" else "LinearRegressor"] == FOLDS
    np.testing.assert_allclose(_scores(model, fused, _probe(df)), _scores(model, plain, _probe(df)), atol=1e-5)
    assert check_onnx(model, fused, df, atol=1e-5) <= 1e-5


def test_fold_models_with_different_encoders_read_one_concatenated_input() -> None:
    model, df = _bagged("binary", families=("lightgbm",), drop_city="pune")
    plain, fused = _unfused(model), to_onnx(model)
    ops = Counter(n.op_type for n in fused.graph.node)
    assert ops["TreeEnsembleRegressor"] == 1 and ops["TreeEnsembleClassifier"] == 0
    assert ops["LabelEncoder"] == 3        # the fold without 'pune' keeps its own city encoder
    np.testing.assert_allclose(_scores(model, fused, _probe(df)), _scores(model, plain, _probe(df)), atol=1e-5)


def test_a_single_model_graph_is_left_as_converted() -> None:
    df, schema, targets = _data()
    model = TabularModel(schema, "binary", "lightgbm", {"n_estimators": 10}).fit(df, targets["binary"])
    plain, compacted = _unfused(model), to_onnx(model)
    assert [n.op_type for n in compacted.graph.node] == [n.op_type for n in plain.graph.node]


def test_dedupe_keeps_one_of_identical_nodes_but_never_merges_an_input_default() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from modelloop.families.tabular.fuse import dedupe_nodes

    one = np.ones((1, 2), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "k1"], ["a"]), helper.make_node("Add", ["x", "k2"], ["b"]),
         helper.make_node("Add", ["x", "c"], ["d"]), helper.make_node("Sum", ["a", "b", "d"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2]),
              helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 2])],  # fed, or its default
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(one, "k1"), numpy_helper.from_array(one, "k2"), numpy_helper.from_array(one, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert dedupe_nodes(model) == 1                    # b is a; d reads the input 'c', whatever its default
    assert [n.output[0] for n in model.graph.node] == ["a", "d", "y"]
    assert sorted(i.name for i in model.graph.initializer) == ["c", "k1"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 2), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x, "c": 5 * one})[0], [[7.0, 7.0]])
