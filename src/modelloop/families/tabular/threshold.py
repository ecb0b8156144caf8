"""Decision threshold for binary classifiers, tuned on out-of-fold probabilities.

F1-type metrics reward a threshold that fits the class balance rather than 0.5, and the best one can
be found exactly: sort the scores once, then every candidate threshold's confusion matrix is a
cumulative sum, so all thresholds are scored in O(n log n) instead of re-scoring n times.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...evaluation.metrics import F1_TYPE

__all__ = ["THRESHOLD_METRICS", "apply_class_scale", "f1_of_labels", "tune_class_scale", "tune_threshold"]

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


# --------------------------------------------------------------------------- multiclass decision
CLASS_SCALE_GRID = np.log(np.r_[1.0, 1.25, 0.8, 1.5, 0.67, 2.0, 0.5, 3.0, 0.33, 4.0, 0.25])  # nearest 1 first
CLASS_SCALE_PASSES = 3


def tune_class_scale(y_idx: np.ndarray, proba: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """(scale, score): predicting ``argmax(proba * scale)`` maximises ``metric`` (an F1 type) on these rows.

    The multiclass counterpart of :func:`tune_threshold`: argmax of the probabilities maximises accuracy,
    not macro-F1, which rewards predicting a rare level more often. Coordinate ascent over one log
    factor per class (``CLASS_SCALE_GRID``, tried nearest 1 first; a factor moves only for a strict gain),
    ``CLASS_SCALE_PASSES`` passes; the scale is normalised to a largest factor of 1. Moving one class's
    factor changes a row's decision only between that class and the best of the others, which is computed
    once per class: each candidate costs O(rows), not O(rows x classes) (100,000 rows x 7 classes: 0.8 s, 2.7 s before)."""
    if metric not in THRESHOLD_METRICS:
        raise ConfigError(f"class-scale tuning supports {', '.join(THRESHOLD_METRICS)}; got '{metric}'")
    y = np.asarray(y_idx).astype(int)
    logp = np.log(np.maximum(np.asarray(proba, dtype=float), 1e-12))
    k = logp.shape[1]
    bias = np.zeros(k)
    best = f1_of_labels(metric, y, (logp + bias).argmax(axis=1), k)
    rows = np.arange(len(y))
    for _ in range(CLASS_SCALE_PASSES):
        moved = False
        for c in range(k):
            others = logp + bias
            others[:, c] = -np.inf
            other = others.argmax(axis=1)
            top = others[rows, other]
            current = bias[c]
            for step in CLASS_SCALE_GRID:
                if step == 0.0:
                    continue
                # argmax's tie rule: class c wins a tie only against a later class
                mine = logp[:, c] + current + step
                pred = np.where((mine > top) | ((mine == top) & (c < other)), c, other)
                value = f1_of_labels(metric, y, pred, k)
                if value > best + 1e-12:
                    best, bias[c], moved = value, current + step, True
        if not moved:
            break
    return np.exp(bias - bias.max()), float(best)


def apply_class_scale(proba: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """``proba * scale`` renormalised to rows summing to 1 (the probabilities a class-scaled model serves)."""
    if scale is None:
        return np.asarray(proba, dtype=float)
    out = np.asarray(proba, dtype=float) * np.asarray(scale, dtype=float)
    total = out.sum(axis=1, keepdims=True)
    return np.divide(out, total, out=np.full_like(out, 1.0 / out.shape[1]), where=total > 0)


def f1_of_labels(metric: str, y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """f1_macro / f1_weighted (scikit-learn's, over the classes in ``y`` or ``pred``) from a confusion
    matrix: the tuning loop scores thousands of candidate decisions."""
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(float)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    if metric == "f1_weighted":
        return float((f1 * support).sum() / max(support.sum(), 1.0))
    present = denom > 0
    return float(f1[present].mean()) if present.any() else 0.0
