"""The fitted anomaly detector: encoder, calibrated members, their blend, the threshold and the reasons.

``predict_proba`` returns the anomaly head's scores: ``(n, 1 + C)`` with column 0 the calibrated score
in [0, 1] (the share of training rows scoring at or below the record) and columns 1.. each feature
column's share of the record's deviation (its reasons, :mod:`.features`). ``predict`` is column 0.

After ``modelloop retrain`` with analysts' verdicts, a ``booster`` (a logistic regression on the members'
calibrated scores and the encoded features, fitted to the verdicts) is blended with the members' mean
before the final calibration: the detector becomes semi-supervised and still scores every record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ...data.schema import Schema
from .detectors import calibrate, training_scores
from .features import TableEncoder, WindowHistory

if TYPE_CHECKING:
    from .images import ImageEncoder

__all__ = ["AnomalyModel", "Member"]


class Member:
    """One fitted detector and its sorted training scores (its calibration)."""

    def __init__(self, name: str, params: dict[str, Any], detector: Any, X: np.ndarray):
        self.name, self.params, self.detector = name, dict(params), detector
        self.reference_ = np.sort(training_scores(detector, X))

    def calibrated(self, X: np.ndarray) -> np.ndarray:
        return calibrate(self.reference_, self.detector.score(X))

    def calibrated_training(self, X: np.ndarray) -> np.ndarray:
        return calibrate(self.reference_, training_scores(self.detector, X))


class AnomalyModel(BaseEstimator):
    """Scores a table's records for anomaly; ``classes_`` are ``[normal, anomaly]`` labels (verdicts)."""

    task = "anomaly"

    def __init__(self) -> None:
        pass

    @classmethod
    def from_members(cls, *, schema: Schema, encoder: TableEncoder | ImageEncoder, members: list[Member], weights: list[float],
                     X_train: np.ndarray, threshold: float, classes: list[Any], selection: dict[str, Any]
                     ) -> AnomalyModel:
        model = cls()
        model.schema, model.encoder_, model.members_ = schema, encoder, members
        model.weights_ = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        model.booster_ = None
        model.booster_weight_ = 0.0
        model.threshold_, model.classes_, model.selection_ = float(threshold), list(classes), dict(selection)
        model.reference_ = np.sort(model._blend(X_train, training=True))
        return model

    # ---- scoring ---------------------------------------------------------------------------------
    def member_scores(self, X: np.ndarray, training: bool = False) -> np.ndarray:
        return np.column_stack([m.calibrated_training(X) if training else m.calibrated(X) for m in self.members_])

    def _blend(self, X: np.ndarray, training: bool = False) -> np.ndarray:
        members = self.member_scores(X, training)
        raw = members @ self.weights_
        if self.booster_ is not None:
            p = self.booster_.predict_proba(np.column_stack([members, X]))[:, 1]
            raw = (1.0 - self.booster_weight_) * raw + self.booster_weight_ * p
        return raw

    def with_booster(self, booster: Any, weight: float, X_train: np.ndarray, selection: dict[str, Any]) -> AnomalyModel:
        """A copy whose blend includes ``booster`` (fitted on verdicts) at ``weight``, recalibrated."""
        import copy

        model = copy.copy(self)
        model.booster_, model.booster_weight_ = booster, float(weight)
        model.selection_ = {**self.selection_, **selection}
        model.reference_ = np.sort(model._blend(X_train, training=True))
        return model

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        return self.encoder_.encode(X)

    def predict_proba(self, X: pd.DataFrame, history: WindowHistory | None = None) -> np.ndarray:
        """``(n, 1 + C)``: the calibrated score, then each feature column's share of the deviation.
        ``history``: the records served before (the time window column counts them; :mod:`.features`)."""
        encoded, deviation = self.encoder_.encode_with_deviations(X, history)
        score = calibrate(self.reference_, self._blend(encoded))
        total = deviation.sum(axis=1, keepdims=True)
        share = np.divide(deviation, total, out=np.zeros_like(deviation), where=total > 0)
        return np.column_stack([score, share])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The calibrated score of each record."""
        return calibrate(self.reference_, self._blend(self.encoder_.encode(X)))

    def score_encoded(self, encoded: np.ndarray) -> np.ndarray:
        return calibrate(self.reference_, self._blend(encoded))

    # ---- what it is --------------------------------------------------------------------------------
    @property
    def features_(self) -> list[str]:
        return list(self.encoder_.columns)

    def feature_importances(self) -> dict[str, float]:
        return {}

    def evaluation_metrics(self, df: pd.DataFrame) -> dict[str, float]:
        """The alerts its threshold raises on ``df`` (``budget.alert_rates``), beside the head's figures:
        ``modelloop evaluate`` and the retrain gate's scoring ask for them as the train stage does."""
        from .budget import alert_rates

        flagged = float(np.mean(self.predict(df) > self.threshold_)) if len(df) else 0.0
        return alert_rates(flagged, self.selection_.get("budget") or {})

    def evaluation_html(self, df: pd.DataFrame, evaluation: dict[str, Any], *, title: str,
                        context: dict[str, Any]) -> str:
        """The evaluation page (``write_evaluation_report`` asks a model that draws its own)."""
        from ..heads import AnomalyHead
        from .report import anomaly_report_html

        head = AnomalyHead("anomaly", self.classes_, self.threshold_, self.features_,
                           int(self.selection_.get("reasons", 3)))
        from .labels import label_vector

        scores = self.predict_proba(df) if len(df) else np.zeros((0, 1 + len(self.features_)))
        answers = head.record_outputs(scores, df.to_dict(orient="records"))
        target = getattr(self, "target_", None)  # None: a version trained before it was kept
        labels = label_vector(df[target], self.classes_, len(df)) if target in df.columns else None
        return anomaly_report_html(df, scores, answers, evaluation, threshold=self.threshold_, title=title,
                                   context=context, selection=self.selection_, labels=labels,
                                   names=[str(c) for c in self.classes_])

    def describe(self) -> dict[str, Any]:
        return {"family": "anomaly", "members": [{"detector": m.name, "params": m.params,
                                                  "weight": round(float(w), 4)}
                                                 for m, w in zip(self.members_, self.weights_, strict=True)],
                "booster": None if self.booster_ is None else {"weight": self.booster_weight_},
                "threshold": self.threshold_, "features": self.features_, "encoder": self.encoder_.describe(),
                "selection": self.selection_}

