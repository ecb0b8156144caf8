"""The training stage: hyper-parameter search, ensembles and decision thresholds for tabular models."""

from __future__ import annotations

from .ensemble import blend, blend_estimator, caruana_weights
from .threshold import THRESHOLD_METRICS, tune_threshold
from .tune import DEFAULT_PARAMS, SearchResult, SearchSettings, TrialRecord, run_search

__all__ = [
    "DEFAULT_PARAMS",
    "THRESHOLD_METRICS",
    "SearchResult",
    "SearchSettings",
    "TrialRecord",
    "blend",
    "blend_estimator",
    "caruana_weights",
    "run_search",
    "tune_threshold",
]
