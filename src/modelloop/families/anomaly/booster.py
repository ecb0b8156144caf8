"""Analysts' verdicts make the detector semi-supervised: a booster fitted on the labelled train rows.

The booster is a logistic regression (balanced classes) on the members' calibrated scores and the encoded
features, fitted to the labels the train split holds: the partial label column and the verdicts that
``modelloop retrain`` merged into it. It is blended with the members' mean at the weight that gives the
best out-of-fold average precision on those rows (0 keeps the unsupervised model as it was), so a few
verdicts cannot make the model worse on what they say. Every record is still scored: the blend is
calibrated by rank against the training rows like the members.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MIN_LABELLED", "WEIGHTS", "fit_booster"]

MIN_LABELLED = 10      # labelled rows of each class (anomaly and normal) before a booster is fitted
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _booster(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000,
                                                              random_state=seed))


def fit_booster(members: np.ndarray, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[Any, float, dict[str, Any]]:
    """``(booster or None, weight, what was done)`` from the members' calibrated training scores ``members``,
    the encoded rows ``X`` and ``y`` (1 anomaly, 0 normal, -1 unlabelled)."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    known = y >= 0
    counts = {"anomalies": int((y == 1).sum()), "normal": int((y == 0).sum())}
    if min(counts.values()) < MIN_LABELLED:
        return None, 0.0, {"fitted": False, **counts,
                           "why": f"fewer than {MIN_LABELLED} labelled rows of each class in the train split"}
    features = np.column_stack([members, X])[known]
    labels, unsupervised = y[known], members[known].mean(axis=1)
    oof = np.zeros(len(labels))
    folds = StratifiedKFold(n_splits=min(5, min(counts.values())), shuffle=True, random_state=seed)
    for fit, held in folds.split(features, labels):
        oof[held] = _booster(seed).fit(features[fit], labels[fit]).predict_proba(features[held])[:, 1]
    ap = {w: float(average_precision_score(labels, (1 - w) * unsupervised + w * oof)) for w in WEIGHTS}
    weight = max(WEIGHTS, key=lambda w: (round(ap[w], 6), -w))  # ties: the less supervised blend
    info = {"fitted": weight > 0, **counts, "weight": weight,
            "average_precision": {str(w): round(v, 4) for w, v in ap.items()}}
    if weight == 0:
        return None, 0.0, {**info, "why": "out-of-fold average precision: the verdicts do not improve the detector"}
    booster = _booster(seed).fit(features, labels)
    return booster, weight, {**info, "why": f"out-of-fold average precision {ap[weight]:.3f} at weight {weight} "
                                             f"(unsupervised {ap[0.0]:.3f})"}
