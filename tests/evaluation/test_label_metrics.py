"""The label figures (accuracy, balanced accuracy, precision/recall/F1, macro and weighted) are counted
from the (true, predicted) pairs, not through scikit-learn's functions, whose input checks cost a few
milliseconds a call: a bootstrap interval computes one figure a resample, 200 or 400 times. The values
must be scikit-learn's to the last bit (a stored figure, a gate's decision, an interval's ends)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from modelloop.evaluation.metrics import labels_from_proba, paired_change_interval, score

LABEL_METRICS = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted",
                 "f1"]


def _sklearn(name: str, y: np.ndarray, pred: np.ndarray, k: int) -> float:
    labels = list(range(k))
    if name == "accuracy":
        return float(skm.accuracy_score(y, pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, pred))
    if name == "f1":
        if k == 2:
            return float(skm.f1_score(y, pred, pos_label=1, zero_division=0))
        return float(skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0))
    kind, avg = name.rsplit("_", 1)
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[kind]
    return float(fn(y, pred, average=avg, labels=labels, zero_division=0))


def test_label_figures_equal_scikit_learns_on_skewed_and_missing_classes():
    rng = np.random.default_rng(0)
    warnings.simplefilter("ignore")  # scikit-learn warns of a class missing from y
    cases = 0
    for _ in range(150):
        k, n = int(rng.integers(2, 6)), int(rng.integers(1, 40))
        y = rng.choice(k, n, p=rng.dirichlet(np.ones(k) * rng.choice([0.2, 1.0, 5.0])))  # often a class missing
        proba = rng.dirichlet(np.ones(k) * rng.choice([0.2, 1.0]), n)
        threshold = rng.choice([None, 0.3, 0.7]) if k == 2 else None
        pred = labels_from_proba(proba, threshold)
        for name in LABEL_METRICS:
            assert score(name, y, proba, threshold=threshold) == _sklearn(name, y, pred, k), (name, y, pred)
            cases += 1
    assert cases == 150 * len(LABEL_METRICS)


def test_a_label_outside_the_classes_is_left_to_scikit_learn():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 1, 2])  # class 2 has no column: scikit-learn's rules (labels=[0, 1]) decide
    assert score("f1_macro", y, proba) == _sklearn("f1_macro", y, np.array([0, 1, 0]), 2)
    assert score("accuracy", y, proba) == pytest.approx(2 / 3)


def test_a_paired_interval_of_f1_is_scikit_learns_over_the_same_resamples():
    """How fast it is: benchmarks/label_metrics.py (speed is measured there, not asserted here)."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    a, b = rng.dirichlet(np.ones(3), 300), rng.dirichlet(np.ones(3), 300)
    lo, hi = paired_change_interval("f1_macro", y, (a, None), (b, None), rounds=50, seed=3)
    draw = np.random.default_rng(3)  # the resamples paired_change_interval draws: n row positions a round
    gains = []
    for _ in range(50):
        i = draw.integers(0, 300, 300)
        gains.append(_sklearn("f1_macro", y[i], a[i].argmax(1), 3) - _sklearn("f1_macro", y[i], b[i].argmax(1), 3))
    assert [lo, hi] == [round(float(v), 6) for v in np.percentile(gains, [2.5, 97.5])]
    assert lo < hi
