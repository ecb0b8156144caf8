"""Metric names, their directions and how each is computed.

One registry serves the search (validation scores), the evaluate stage (test figures), monitoring
and the optimize stage, so a figure called ``f1_macro`` means the same thing everywhere.

Which metrics an output kind is scored by, and its default, is its head's decision
(:mod:`modelloop.families.heads`: ``metrics``, ``default_metric``, ``check_metric``).

Conventions: for classification ``y_true`` holds class indices ``0..K-1`` and ``proba`` an
``(n, K)`` array in the same class order; for regression ``pred`` is a float array.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..errors import ConfigError

__all__ = [
    "CLASSIFICATION_METRICS",
    "F1_TYPE",
    "IN_TARGET_UNITS",
    "REGRESSION_METRICS",
    "bootstrap_interval",
    "change_within_noise",
    "classification_metrics",
    "direction",
    "improvement",
    "labels_from_proba",
    "paired_change_interval",
    "regression_metrics",
    "score",
]

CLASSIFICATION_METRICS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted",
    "f1", "roc_auc", "pr_auc", "log_loss",
)
REGRESSION_METRICS = ("rmse", "mae", "r2")
F1_TYPE = ("f1", "f1_macro", "f1_weighted")
_MINIMIZE = {"log_loss", "rmse", "mae", "perplexity"}
# Errors measured in the target's own units: 0.1 is nothing on house prices and everything on a
# rate, so a change is judged as a share of the figure it changes (so is a perplexity: 1.1x is a 10% loss
# whether the model starts at 3 or at 30).
IN_TARGET_UNITS = frozenset({"rmse", "mae", "perplexity"})
_NEEDS_PROBA = {"roc_auc", "pr_auc", "log_loss"}


def direction(metric: str) -> str:
    """``"minimize"`` for losses and errors, ``"maximize"`` for everything else."""
    return "minimize" if metric in _MINIMIZE else "maximize"


def improvement(metric: str, before: float, after: float) -> float:
    """How much better ``after`` is than ``before`` (negative: worse), in the metric's direction.

    For errors in the target's units (``IN_TARGET_UNITS``) the change is a share of ``before``, so
    that one threshold (``retrain.min_improvement``, ``retrain.max_holdout_drop``) fits every scale.
    """
    gain = after - before if direction(metric) == "maximize" else before - after
    if metric not in IN_TARGET_UNITS:
        return float(gain)
    if before == 0:
        return 0.0 if gain == 0 else float(np.copysign(np.inf, gain))
    return float(gain / abs(before))


def labels_from_proba(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices: argmax, or for binary problems ``p(class 1) >= threshold`` when one is set."""
    proba = np.asarray(proba)
    if threshold is not None and proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(int)
    return proba.argmax(axis=1)


def _cls(name: str, y: np.ndarray, proba: np.ndarray, threshold: float | None) -> float:
    k = proba.shape[1]
    if name not in _NEEDS_PROBA:
        fast = _label_figure(name, y, labels_from_proba(proba, threshold), k)
        if fast is not None:
            return fast
    from sklearn import metrics as skm  # here, not at import: the config (and the CLI) name metrics too
    if name in _NEEDS_PROBA:
        present = np.unique(y)
        if name == "log_loss":
            p = np.clip(proba, 1e-15, 1.0)
            return float(skm.log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(range(k))))
        if len(present) < 2:
            return float("nan")
        if k == 2:
            fn: Callable = skm.roc_auc_score if name == "roc_auc" else skm.average_precision_score
            return float(fn(y, proba[:, 1]))
        if name == "pr_auc":
            onehot = np.eye(k)[y]
            return float(skm.average_precision_score(onehot, proba, average="macro"))
        sub = proba[:, present] / np.clip(proba[:, present].sum(axis=1, keepdims=True), 1e-15, None)
        if len(present) == 2:
            return float(skm.roc_auc_score(y == present[1], sub[:, 1]))
        return float(skm.roc_auc_score(y, sub, multi_class="ovr", labels=present))
    pred = labels_from_proba(proba, threshold)
    labels = list(range(k))
    if name == "accuracy":
        return float(skm.accuracy_score(y, pred))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, pred))
    if name == "f1":
        if k != 2:
            return float(skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0))
        return float(skm.f1_score(y, pred, pos_label=1, zero_division=0))
    avg = name.rsplit("_", 1)[1]
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[
        name.rsplit("_", 1)[0]
    ]
    return float(fn(y, pred, average=avg, labels=labels, zero_division=0))


def _label_figure(name: str, y: np.ndarray, pred: np.ndarray, k: int) -> float | None:
    """A figure of the predicted labels from one count of (true, predicted) pairs: the value scikit-learn's
    function gives in :func:`_cls` (same formulas, zero_division=0, every class of ``range(k)`` in the
    macro average), at a few microseconds instead of a few milliseconds of its input checks. A bootstrap
    interval computes one figure per resample, hundreds of times (evaluate, optimize, the retrain gate).
    None (scikit-learn decides) for no rows or a label outside ``range(k)``."""
    n = len(y)
    if n == 0 or y.min() < 0 or y.max() >= k:
        return None
    if name == "accuracy":
        return float(np.mean(y == pred))
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(counts).astype(float)
    true_sum, pred_sum = counts.sum(axis=1), counts.sum(axis=0)
    if name == "balanced_accuracy":  # recall of each class present in y (a predicted-only class is left out)
        present = true_sum > 0
        return float(np.mean(tp[present] / true_sum[present]))

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(k), where=den > 0)

    kind, _, avg = name.partition("_")
    per_class = {"precision": lambda: ratio(tp, pred_sum), "recall": lambda: ratio(tp, true_sum),
                 "f1": lambda: ratio(2.0 * tp, (true_sum + pred_sum).astype(float))}[kind]()
    if name == "f1":
        return float(per_class[1]) if k == 2 else float(np.mean(per_class))
    return float(np.average(per_class, weights=true_sum if avg == "weighted" else None))


def _reg(name: str, y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn import metrics as skm
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y, pred)))
    if name == "mae":
        return float(skm.mean_absolute_error(y, pred))
    return float(skm.r2_score(y, pred))


def score(metric: str, y_true, output, *, threshold: float | None = None) -> float:
    """One figure: ``output`` is ``(n, K)`` probabilities for classification, predictions otherwise."""
    y = np.asarray(y_true)
    out = np.asarray(output)
    if metric in REGRESSION_METRICS:
        return _reg(metric, y.astype(float), out.astype(float))
    if metric not in CLASSIFICATION_METRICS:
        raise ConfigError(f"unknown metric '{metric}'; allowed: "
                          f"{', '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)}")
    return _cls(metric, y.astype(int), out, threshold)


def classification_metrics(y_true, proba, *, threshold: float | None = None) -> dict[str, float]:
    """The contract figures for a classifier (``roc_auc``/``pr_auc`` for binary and multiclass)."""
    names = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
             "f1_weighted", "roc_auc", "pr_auc", "log_loss"]
    if np.asarray(proba).shape[1] == 2:
        names.append("f1")
    with warnings.catch_warnings():  # a small slice may lack a class: the figures say so, not a warning
        warnings.simplefilter("ignore", UserWarning)
        return {n: score(n, y_true, proba, threshold=threshold) for n in names}


def regression_metrics(y_true, pred) -> dict[str, float]:
    return {n: score(n, y_true, pred) for n in REGRESSION_METRICS}


def bootstrap_interval(metric: str, y_true: np.ndarray, output: np.ndarray, threshold: float | None = None, *,
                       rounds: int = 200, seed: int = 0, figure: Callable[..., float] | None = None) -> list[float]:
    """The 95 % interval of one figure over bootstrap resamples of the rows: how far a figure measured on a
    few rows (a small test set) would move with other rows like them. ``figure`` as in
    :func:`paired_change_interval`. A resample whose figure is undefined (a class missing) is left out."""
    compute = figure or score
    y, out = np.asarray(y_true), np.asarray(output)
    return _percentiles(len(y), lambda i: compute(metric, y[i], out[i], threshold=threshold), rounds, seed)


def paired_change_interval(metric: str, y_true: np.ndarray, after: tuple[np.ndarray, float | None],
                           before: tuple[np.ndarray, float | None], *, rounds: int = 200, seed: int = 0,
                           figure: Callable[..., float] | None = None) -> list[float]:
    """The 95 % interval of ``after``'s change against ``before`` over paired bootstrap resamples of the
    rows: how much of a change measured on a few rows (a small test set, a recent slice with few
    positives) is noise. ``after`` and ``before`` are (output, threshold) of the two models on the same
    rows; ``figure(metric, y, output, threshold=...)`` computes one figure (default :func:`score`; a head's
    own figure otherwise). The change is in the metric's own units, positive when ``after`` is better (a
    caller judging errors in the target's units as a share, as :func:`improvement` does, divides by
    ``before``'s figure). A resample whose figure is undefined (a class missing) is left out."""
    compute = figure or score
    y = np.asarray(y_true)
    sign = 1.0 if direction(metric) == "maximize" else -1.0
    return _percentiles(len(y), lambda i: sign * (compute(metric, y[i], after[0][i], threshold=after[1])
                                                  - compute(metric, y[i], before[0][i], threshold=before[1])),
                        rounds, seed)


def change_within_noise(interval: list[float] | None) -> bool | None:
    """Whether a :func:`paired_change_interval` says the rows cannot tell the two models apart: it holds 0
    (a bound at 0 included: no change on >= 2.5% of the resamples); one of a single point (the same
    answers) can. None without an interval. The retrain gate's ``recent_gain_within_noise`` and the
    demo's fresh-data ``within_noise``."""
    if interval is None:
        return None
    return interval[0] <= 0 <= interval[1] and interval[0] < interval[1]


def _percentiles(n: int, statistic: Callable[[np.ndarray], float], rounds: int, seed: int) -> list[float]:
    """2.5th and 97.5th percentiles of ``statistic`` over ``rounds`` resamples of ``n`` row positions."""
    rng = np.random.default_rng(seed)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            values.append(statistic(rng.integers(0, n, n)))
        lo, hi = np.nanpercentile(np.array(values, dtype=float), [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]
