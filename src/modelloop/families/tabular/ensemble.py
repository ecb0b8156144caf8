"""Greedy ensemble selection (Caruana et al., 2004) and the soft-voting blend that serves it.

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
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch

__all__ = ["blend", "blend_estimator", "caruana_weights"]


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
