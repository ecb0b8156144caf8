"""Decision threshold for binary classifiers, tuned on out-of-fold probabilities.

F1-type metrics reward a threshold that fits the class balance rather than 0.5, and the best one can
be found exactly: sort the scores once, then every candidate threshold's confusion matrix is a
cumulative sum, so all thresholds are scored in O(n log n) instead of re-scoring n times.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...evaluation.metrics import F1_TYPE

__all__ = ["THRESHOLD_METRICS", "tune_threshold"]

THRESHOLD_METRICS: tuple[str, ...] = F1_TYPE


def tune_threshold(y_idx: np.ndarray, p1: np.ndarray, metric: str) -> tuple[float, float]:
    """(threshold, score): predicting class 1 when ``p1 >= threshold`` maximises ``metric``.

    The threshold sits halfway between the chosen score and the next lower distinct one, so the
    split on these rows is exactly the scored one and new rows get a margin on both sides.
    """
    if metric not in THRESHOLD_METRICS:
        raise ConfigError(f"threshold tuning supports {', '.join(THRESHOLD_METRICS)}; got '{metric}'")
    y = np.asarray(y_idx).astype(int)
    p = np.asarray(p1, dtype=float)
    if len(y) == 0:
        return 0.5, float("nan")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # The last row of each run of equal scores: "predict 1 for everything scoring >= this value".
    ends = np.r_[np.nonzero(np.diff(p_sorted))[0], len(p) - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    scores = _f1_family(metric, tp, fp, int(y.sum()), len(y))
    # Also allow "predict 0 for everything" (threshold above the highest score).
    scores = np.r_[_f1_family(metric, np.array([0]), np.array([0]), int(y.sum()), len(y)), scores]
    best = int(np.argmax(scores))
    values = np.r_[np.inf, p_sorted[ends]]
    upper = values[best]
    lower = values[best + 1] if best + 1 < len(values) else -np.inf
    return _midpoint(upper, lower), float(scores[best])


def _midpoint(upper: float, lower: float) -> float:
    if np.isinf(upper):
        return float(np.nextafter(lower, np.inf)) if np.isfinite(lower) else 1.0
    if np.isinf(lower):
        return float(upper)
    return float((upper + lower) / 2.0)


def _f1_family(metric: str, tp: np.ndarray, fp: np.ndarray, pos: int, n: int) -> np.ndarray:
    """f1 / f1_macro / f1_weighted for every (tp, fp) pair of a binary problem."""
    fn = pos - tp
    tn = (n - pos) - fp
    f1_pos = _f1(tp, fp, fn)
    if metric == "f1":
        return f1_pos
    f1_neg = _f1(tn, fn, fp)
    if metric == "f1_macro":
        return (f1_pos + f1_neg) / 2.0
    return (f1_pos * pos + f1_neg * (n - pos)) / max(n, 1)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
