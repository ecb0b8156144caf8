"""Evaluation: one metric registry, evaluation figures as JSON, and the HTML report."""

from __future__ import annotations

from .metrics import (
    CLASSIFICATION_METRICS,
    F1_TYPE,
    REGRESSION_METRICS,
    classification_metrics,
    direction,
    labels_from_proba,
    regression_metrics,
    score,
)

_REPORT = ("write_report",)
_BY_KIND = ("TASKS", "evaluate_predictions", "render_report")  # through the output kind's head


def __getattr__(name: str) -> object:
    """The report half (plots, scikit-learn) loads on first use: the config and CLI only need metric names."""
    if name in _REPORT:
        from . import report

        return getattr(report, name)
    if name in _BY_KIND:
        from . import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CLASSIFICATION_METRICS",
    "F1_TYPE",
    "REGRESSION_METRICS",
    "TASKS",
    "classification_metrics",
    "direction",
    "evaluate_predictions",
    "labels_from_proba",
    "regression_metrics",
    "render_report",
    "score",
    "write_report",
]
