"""Greedy ensemble selection (Caruana et al., 2004) and the soft-voting blend that serves it; stacking
(a level-2 model over the members' out-of-fold outputs, issue 27) and the estimator that serves it.

Selection works on out-of-fold predictions only, so it costs no extra training: each round adds (with
replacement) the member whose inclusion gives the best score of the running average, and the weights
are how often each member was picked, taken at the best round.

The blend is a scikit-learn ``VotingClassifier``/``VotingRegressor`` assembled from pipelines that
are already fitted (nothing is refitted; ``flatten_transform=False`` because skl2onnx needs it). We use these rather than a class of our own because
skl2onnx converts them natively, pickles need no modelloop-specific class, and
``predict_proba`` is exactly the weighted average the selection scored.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import StackingClassifier, StackingRegressor, VotingClassifier, VotingRegressor
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch

__all__ = ["ClassScaledClassifier", "StackedClassifier", "StackedRegressor", "blend", "blend_estimator",
           "caruana_weights", "class_scaled", "level2_model", "stack_estimator", "stack_features"]


def caruana_weights(
    predictions: Sequence[np.ndarray],
    score_fn: Callable[[np.ndarray], float],
    *,
    maximize: bool,
    rounds: int = 25,
) -> tuple[np.ndarray, float]:
    """(weights summing to 1, best score) of greedy selection with replacement.

    ``predictions`` are the candidates' out-of-fold outputs ((n, K) probabilities or (n,) values),
    ``score_fn`` scores a blended output (threshold tuning, if any, happens inside it).
    """
    if not predictions:
        raise ValueError("ensemble selection needs at least one candidate")
    preds = [np.asarray(p, dtype=float) for p in predictions]
    sign = 1.0 if maximize else -1.0
    counts = np.zeros(len(preds), dtype=int)
    total = np.zeros_like(preds[0])
    best_counts, best_score = counts.copy(), -np.inf
    for step in range(1, rounds + 1):
        trial_scores = [sign * _safe(score_fn((total + p) / step)) for p in preds]
        pick = int(np.argmax(trial_scores))
        counts[pick] += 1
        total += preds[pick]
        if trial_scores[pick] > best_score:
            best_counts, best_score = counts.copy(), trial_scores[pick]
    return best_counts / best_counts.sum(), float(sign * best_score)


def _safe(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def blend(predictions: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The weighted average the blend estimator computes (for scoring without refitting)."""
    return np.average(np.stack([np.asarray(p, dtype=float) for p in predictions]), axis=0,
                      weights=np.asarray(weights, dtype=float))


def blend_estimator(members: Sequence[Any], weights: Sequence[float] | np.ndarray, *, task: str,
                    n_classes: int | None = None) -> VotingClassifier | VotingRegressor:
    """A fitted soft-voting estimator over already-fitted members (targets are class indices)."""
    names = [f"m{i}" for i in range(len(members))]
    pairs = list(zip(names, members, strict=True))
    w = np.asarray(weights, dtype=float)  # an array: skl2onnx's converter calls weights.sum()
    if task == "regression":
        est: Any = VotingRegressor(pairs, weights=w)
    else:
        est = VotingClassifier(pairs, voting="soft", weights=w, flatten_transform=False)
        est.le_ = LabelEncoder().fit(np.arange(n_classes or 2))
        est.classes_ = est.le_.classes_
    est.estimators_ = list(members)
    est.named_estimators_ = Bunch(**dict(pairs))
    return est


# --------------------------------------------------------------------------- stacking
STACK_EPS = 1e-6  # probabilities are floored here before their log: a member's 0 stays finite


class StackedClassifier(StackingClassifier):
    """A level-2 model over already-fitted members' log-probabilities (scikit-learn's stacking, assembled
    from parts: nothing is refitted here). Its own class so that the level-2 input is
    :func:`stack_features` (log-probabilities, not scikit-learn's raw ones) and so that its ONNX converter
    (``export.py``) can feed every member all of the graph's inputs, which skl2onnx's stacking converter
    cannot (one input)."""

    def transform(self, X: Any) -> np.ndarray:
        return stack_features([m.predict_proba(X) for m in self.estimators_], "classification")


class StackedRegressor(StackingRegressor):
    """The regression counterpart of :class:`StackedClassifier` (the members' values side by side)."""

    def transform(self, X: Any) -> np.ndarray:
        return stack_features([m.predict(X) for m in self.estimators_], "regression")


def stack_features(predictions: Sequence[np.ndarray], task: str) -> np.ndarray:
    """The level-2 input from the members' outputs: every member's log class probabilities side by side
    (floored at ``STACK_EPS``; a logistic regression on them can form each member's logits), or their
    predicted values for regression."""
    cols = []
    for p in predictions:
        p = np.asarray(p, dtype=float)
        cols.append(p.reshape(-1, 1) if task == "regression" else np.log(np.maximum(p, STACK_EPS)))
    return np.hstack(cols)


def level2_model(task: str, *, seed: int = 0) -> Any:
    """The unfitted level-2 model: a logistic regression on the members' log-probabilities, or a linear
    regression with non-negative weights on their values. No class weights: the members were already
    trained with them, and weighting twice cost 0.08 macro-F1 on a 3-class table (48/657/95 rows)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if task == "regression":
        return LinearRegression(positive=True)
    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


def stack_estimator(members: Sequence[Any], level2: Any, *, task: str, n_classes: int | None = None) -> Any:
    """A fitted stacking estimator over already-fitted members and a fitted level-2 model."""
    names = [f"m{i}" for i in range(len(members))]
    pairs = list(zip(names, members, strict=True))
    est: Any
    if task == "regression":
        est = StackedRegressor(pairs, final_estimator=level2)
        est.stack_method_ = ["predict"] * len(members)
    else:
        est = StackedClassifier(pairs, final_estimator=level2, stack_method="predict_proba")
        est.stack_method_ = ["predict_proba"] * len(members)
        est._label_encoder = LabelEncoder().fit(np.arange(n_classes or 2))
        est.classes_ = est._label_encoder.classes_
    est.estimators_ = list(members)
    est.named_estimators_ = Bunch(**dict(pairs))
    est.final_estimator_ = level2
    return est


# --------------------------------------------------------------------------- multiclass decision
class ClassScaledClassifier(ClassifierMixin, BaseEstimator):
    """A fitted multiclass estimator whose probabilities are multiplied by one factor per class and
    renormalised (``threshold.apply_class_scale``), so that their argmax is the decision tuned for an
    F1-type metric out of fold (``threshold.tune_class_scale``): the multiclass counterpart of a binary
    model's tuned threshold, carried by the probabilities so that every path that takes the argmax
    (``labels_from_proba``, serving, the ONNX graph's ``label``) decides alike. ``estimators_`` holds the
    one inner estimator and ``weights`` its weight 1, so the code that walks blends walks it too."""

    def __init__(self, estimator: Any = None, scale: Any = None) -> None:
        self.estimator = estimator
        self.scale = scale

    def predict_proba(self, X: Any) -> np.ndarray:
        from .threshold import apply_class_scale

        return apply_class_scale(self.estimators_[0].predict_proba(X), self.scale_)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]


def class_scaled(estimator: Any, scale: np.ndarray) -> ClassScaledClassifier:
    """``estimator`` (fitted, classes are indices) served with its probabilities scaled by ``scale``."""
    est = ClassScaledClassifier(estimator, np.asarray(scale, dtype=float))
    est.estimators_ = [estimator]
    est.weights = np.ones(1)
    est.scale_ = np.asarray(scale, dtype=float)
    est.classes_ = np.arange(len(est.scale_))
    return est
