"""Evaluation: one metric registry, evaluation figures as JSON, and the HTML report."""

from __future__ import annotations

from .metrics import (
    CLASSIFICATION_METRICS,
    F1_TYPE,
    REGRESSION_METRICS,
    check_metric,
    classification_metrics,
    default_metric,
    direction,
    labels_from_proba,
    regression_metrics,
    score,
)
from .report import TASKS, evaluate_predictions, render_report, write_report

__all__ = [
    "CLASSIFICATION_METRICS",
    "F1_TYPE",
    "REGRESSION_METRICS",
    "TASKS",
    "check_metric",
    "classification_metrics",
    "default_metric",
    "direction",
    "evaluate_predictions",
    "labels_from_proba",
    "regression_metrics",
    "render_report",
    "score",
    "write_report",
]
