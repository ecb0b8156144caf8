"""Multiclass targets with many levels (issue 27): tempered class weights that keep accuracy on a
7-level target with tiny levels, and the warning that suggests a regression for ordered numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.utils.class_weight import compute_sample_weight

from modelloop.data.schema import Schema
from modelloop.families.tabular.model import (
    MAX_CLASS_WEIGHT_RATIO, TabularModel, build_estimator, encode_labels, multiclass_weights, prepare_features,
    prepared_columns)
from modelloop.families.tabular.task import ordinal_warning

SHARES = [0.005, 0.03, 0.33, 0.44, 0.17, 0.024, 0.001]  # a wine-quality-like 7-level target, 3..9


def _levels(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    z = X["x0"] + 0.7 * X["x1"] - 0.5 * X["x2"] + 0.3 * X["x3"] * X["x4"] + rng.normal(0, 0.8, n)
    cuts = np.quantile(z, np.cumsum(SHARES[:-1]))
    return X, pd.Series(np.searchsorted(cuts, z) + 3, name="quality")


def test_multiclass_weights_are_tempered_capped_and_keep_the_total() -> None:
    y = np.repeat(np.arange(7), [15, 90, 990, 1320, 510, 72, 3])
    w = multiclass_weights(y)
    assert np.all(np.diff(w[[3, 2, 4, 1, 5, 0, 6]]) >= 0)          # rarer levels weigh more
    assert w.max() / w.min() == pytest.approx(MAX_CLASS_WEIGHT_RATIO)  # the 3-row level is capped
    assert w[1] / w[3] == pytest.approx(np.sqrt(1320 / 90))           # square root of "balanced"
    assert w[y].sum() == pytest.approx(len(y))


def test_tempered_weights_keep_accuracy_that_full_balancing_loses() -> None:
    X, y = _levels(3000, 0)
    Xt, yt = _levels(3000, 10)
    schema = Schema(columns={c: "numeric" for c in X.columns})

    def fitted(class_weight: str) -> np.ndarray:
        return TabularModel(schema, "multiclass", "linear", class_weight=class_weight).fit(X, y).predict(Xt)

    numeric, categorical = prepared_columns(schema)
    full = build_estimator("linear", task="multiclass", numeric_cols=numeric, categorical_cols=categorical,
                           class_weight="none")
    idx, classes = encode_labels(y, "multiclass")
    full.fit(prepare_features(X, schema), idx, model__sample_weight=compute_sample_weight("balanced", idx))
    balanced_full = np.asarray(classes)[full.predict(prepare_features(Xt, schema))]
    tempered, unweighted = fitted("balanced"), fitted("none")
    acc = {k: accuracy_score(yt, p) for k, p in (("tempered", tempered), ("full", balanced_full),
                                                 ("none", unweighted))}
    f1 = {k: f1_score(yt, p, average="macro") for k, p in (("tempered", tempered), ("none", unweighted))}
    assert acc["tempered"] > acc["full"] + 0.05          # 0.628 against 0.515: full balancing trades common levels for rare ones
    assert acc["tempered"] > acc["none"] - 0.05  # 0.628 against 0.659 here
    assert f1["tempered"] > f1["none"]                    # and the rare levels still count


def test_ordered_numbers_suggest_a_regression_codes_and_words_do_not() -> None:
    _, y = _levels(500, 0)
    message = ordinal_warning(y, "quality")
    assert message is not None and "task: regression" in message and "quality" in message
    assert "3, 4, 5, ..., 9" in message
    assert ordinal_warning(pd.Series([1, 2, 3] * 5), "g") is None           # three levels: codes as often
    assert ordinal_warning(pd.Series([1, 2, 4, 8] * 5), "g") is None        # not evenly spaced
    assert ordinal_warning(pd.Series(list("abcd") * 5), "g") is None
    assert ordinal_warning(pd.Series([0.5, 1.5, 2.5, 3.5]), "g") is None    # not whole numbers
