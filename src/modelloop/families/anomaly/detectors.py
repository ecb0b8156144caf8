"""The detectors the anomaly family searches and ensembles, each ``fit(X)`` then ``score(X)`` (higher =
more anomalous), and the rank calibration that puts their scores on one [0, 1] scale.

ECOD and COPOD are written here from their papers (PyOD is not a dependency): both read each column's
empirical CDF from the training rows. A value's tail probability is ``(count of training values at or
beyond it + 1) / (n + 1)``, its outlyingness ``-log`` of that, and a row's score the sum over columns:

* ECOD (Li et al., 2022): per column the larger of the left tail, the right tail and the tail its
  skewness points to; summed over columns.
* COPOD (Li et al., 2020): per column the larger of the skewness-chosen tail and the mean of both tails.

The per-column terms of ECOD are what :mod:`.features` could also use to explain a record; the family
explains with robust deviations instead, which every detector shares. Isolation Forest, LOF
(``novelty=True``) and kNN distance come from scikit-learn; the autoencoder (for wide data) is
:mod:`.autoencoder`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COPOD", "DETECTORS", "ECOD", "KNNDetector", "build_detector", "calibrate", "tail_terms", "training_scores"]

DETECTORS: tuple[str, ...] = ("iforest", "ecod", "copod", "knn", "lof", "autoencoder")


def tail_terms(reference: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(-log left tail, -log right tail)`` of each value of ``X`` against the columns of ``reference``.

    Left tail: ``(#reference <= x + 1) / (n + 1)``; right tail: ``(#reference >= x + 1) / (n + 1)``."""
    n = reference.shape[0]
    left = np.empty(X.shape, dtype=np.float64)
    right = np.empty(X.shape, dtype=np.float64)
    for j in range(X.shape[1]):
        col = reference[:, j]
        left[:, j] = np.searchsorted(col, X[:, j], side="right")
        right[:, j] = n - np.searchsorted(col, X[:, j], side="left")
    return -np.log((left + 1.0) / (n + 1.0)), -np.log((right + 1.0) / (n + 1.0))


def _skew_sign(X: np.ndarray) -> np.ndarray:
    centred = X - X.mean(axis=0)
    m2 = (centred ** 2).mean(axis=0)
    m3 = (centred ** 3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(m2 > 0, m3 / np.power(m2, 1.5), 0.0)
    return np.sign(skew)


class _EmpiricalTails:
    """Shared state of ECOD and COPOD: the sorted training columns and their skewness signs."""

    def fit(self, X: np.ndarray) -> _EmpiricalTails:
        self.sorted_ = np.sort(np.asarray(X, dtype=np.float64), axis=0)
        self.skew_ = _skew_sign(self.sorted_)
        return self

    def _terms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        left, right = tail_terms(self.sorted_, np.asarray(X, dtype=np.float64))
        # the tail the skewness points to (left for a left-skewed column, both for a symmetric one)
        by_skew = left * (self.skew_ <= 0) + right * (self.skew_ >= 0)
        return left, right, by_skew


class ECOD(_EmpiricalTails):
    def column_scores(self, X: np.ndarray) -> np.ndarray:
        left, right, by_skew = self._terms(X)
        return np.maximum(np.maximum(left, right), by_skew)

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.column_scores(X).sum(axis=1)


class COPOD(_EmpiricalTails):
    def score(self, X: np.ndarray) -> np.ndarray:
        left, right, by_skew = self._terms(X)
        return np.maximum(by_skew, (left + right) / 2.0).sum(axis=1)


class KNNDetector:
    """Distance to the ``k``-th nearest training row (``largest``) or the mean of the ``k`` distances.
    A training row is not its own neighbour (``training_scores``)."""

    def __init__(self, k: int = 10, method: str = "largest"):
        self.k, self.method = k, method

    def fit(self, X: np.ndarray) -> KNNDetector:
        from sklearn.neighbors import NearestNeighbors

        self.k_ = max(1, min(self.k, len(X) - 1))
        self.nn_ = NearestNeighbors(n_neighbors=self.k_ + 1).fit(X)
        return self

    def _reduce(self, dist: np.ndarray) -> np.ndarray:
        return dist[:, -1] if self.method == "largest" else dist.mean(axis=1)

    def score(self, X: np.ndarray) -> np.ndarray:
        dist, _ = self.nn_.kneighbors(X, n_neighbors=self.k_)
        return self._reduce(dist)

    def training_scores(self, X: np.ndarray) -> np.ndarray:
        dist, _ = self.nn_.kneighbors(X, n_neighbors=self.k_ + 1)
        return self._reduce(dist[:, 1:])


class _Sklearn:
    """Isolation Forest or LOF: scikit-learn's ``score_samples``, negated (higher = more anomalous)."""

    def __init__(self, estimator: Any, training: str | None = None):
        self.estimator, self.training = estimator, training

    def fit(self, X: np.ndarray) -> _Sklearn:
        self.estimator.fit(X)
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        return -np.asarray(self.estimator.score_samples(X), dtype=np.float64)

    def training_scores(self, X: np.ndarray) -> np.ndarray:
        if self.training == "lof":  # a training row's own LOF, without itself as a neighbour
            return -np.asarray(self.estimator.negative_outlier_factor_, dtype=np.float64)
        return self.score(X)


def build_detector(name: str, params: dict[str, Any], seed: int, n_rows: int) -> Any:
    """An unfitted detector ``name`` with its searched ``params`` (the search's native names)."""
    if name == "iforest":
        from sklearn.ensemble import IsolationForest

        return _Sklearn(IsolationForest(n_estimators=int(params.get("iforest_trees", 100)),
                                        max_samples=min(n_rows, int(params.get("iforest_samples", 256))),
                                        max_features=float(params.get("iforest_features", 1.0)),
                                        random_state=seed, n_jobs=1))
    if name == "lof":
        from sklearn.neighbors import LocalOutlierFactor

        k = max(1, min(int(params.get("lof_k", 20)), n_rows - 1))
        return _Sklearn(LocalOutlierFactor(n_neighbors=k, novelty=True), training="lof")
    if name == "knn":
        return KNNDetector(int(params.get("knn_k", 10)), str(params.get("knn_method", "largest")))
    if name == "autoencoder":  # PyTorch to fit, numpy to score (autoencoder.py)
        from .autoencoder import AutoencoderDetector

        return AutoencoderDetector(int(params.get("ae_hidden", 16)), int(params.get("ae_bottleneck", 2)),
                                   float(params.get("ae_lr", 1e-2)), seed)
    if name == "ecod":
        return ECOD()
    if name == "copod":
        return COPOD()
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


def training_scores(detector: Any, X: np.ndarray) -> np.ndarray:
    """Raw scores of the training rows themselves (leave-self-out where the detector has neighbours)."""
    own = getattr(detector, "training_scores", None)
    return np.asarray(own(X) if own is not None else detector.score(X), dtype=np.float64)


def calibrate(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores as the share of the (sorted) training scores ``reference`` at or below them: [0, 1], the
    same meaning for every detector and every model version (0.99: above 99 % of the training rows)."""
    return np.searchsorted(reference, np.asarray(scores, dtype=np.float64), side="right") / max(len(reference), 1)
