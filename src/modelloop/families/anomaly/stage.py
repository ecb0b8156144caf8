"""The anomaly train stage: dataset version -> encoded train rows -> detectors searched on the shared
driver -> calibrated ensemble (or the detector the labels prefer) -> test evaluation -> registration.

Labels (``data.target``, partial) are read only to choose among detectors and to evaluate; rows without
one are trained on like every other. Registration goes through :func:`modelloop.training.train.record_model`
with the anomaly head (``info.task: anomaly``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError
from .. import label_column
from .budget import alert_rates, threshold_share
from .config import AnomalyConfig
from .features import TableEncoder
from .labels import label_classes, label_vector
from .model import AnomalyModel, Member
from .search import AnomalySearch, default_detectors, run_anomaly_search

__all__ = ["anomaly_settings", "anomaly_study_name", "fit_members", "make_encoder", "train_anomaly"]


def anomaly_settings(cfg: Any) -> AnomalyConfig:
    """The ``anomaly:`` section of a config (defaults when it has none)."""
    section = getattr(cfg, "anomaly", None)
    if section is None:
        return AnomalyConfig()
    return section if isinstance(section, AnomalyConfig) else AnomalyConfig.model_validate(section)


def anomaly_study_name(ws: Any, dataset_id: str) -> str:
    """Resumable while the dataset and everything but the budget stay the same."""
    from ...config import config_hash

    cfg = ws.config
    key = json.dumps([anomaly_settings(cfg).model_dump(mode="json"), cfg.split.model_dump(), cfg.seed,
                      config_hash(cfg, "data")], sort_keys=True, default=str)
    return f"{cfg.name}-anomaly-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def make_encoder(settings: AnomalyConfig, schema: Any, cfg: Any) -> Any:
    """The unfitted encoder of a project's records: a table's (``features.py``) or, with
    ``anomaly.backbone``, the images' (``images.py``)."""
    if settings.backbone is not None:
        from pathlib import Path

        from .images import ImageEncoder

        return ImageEncoder(schema, settings.backbone, settings.image_size, root=Path(cfg.root), seed=cfg.seed)
    return TableEncoder(schema, time=cfg.data.time, window=settings.window_seconds, window_by=settings.window_by)


def fit_members(chosen: list[tuple[str, dict[str, Any]]], X: np.ndarray, seed: int) -> list[Member]:
    from .detectors import build_detector

    return [Member(name, params, build_detector(name, params, seed, len(X)).fit(X), X) for name, params in chosen]


def train_anomaly(ws: Any, *, budget: float | None = None, trials: int | None = None, dataset: str | None = None,
                  warm_start: list[dict] | None = None, kind: str = "train",
                  progress: Callable[[int, float], None] | None = None,
                  register_as_production: bool | None = None) -> dict[str, Any]:
    """Search and ensemble the detectors, evaluate on the frozen test split's labels, register."""
    from ...data.ingest import ensure_split, load_dataset
    from ...data.stages import cleaning_plan
    from ...registry import tracker_for
    from ...training.train import record_model

    cfg, started = ws.config, time.time()
    settings = anomaly_settings(cfg)
    row, df, schema = load_dataset(ws, dataset)
    side = ensure_split(ws, row, df).to_numpy()
    label = label_column(cfg)  # data.target, else the verdicts' own column (a project without a target)
    target = label if label in df.columns else None
    train_df = df[side == "train"].reset_index(drop=True)
    test_df = df[side == "test"].reset_index(drop=True)
    classes = label_classes(df[target] if target else None, target, settings.positive_label)
    share, alert_line = threshold_share(settings, df, cfg.data.time)  # the traffic: every split; before any work
    encoder = make_encoder(settings, schema, cfg).fit(train_df)
    X = encoder.encode(train_df)
    n_trials = trials if trials is not None else cfg.train.trials
    budget = budget if budget is not None else cfg.train.budget
    if budget is None and n_trials is None:
        raise ConfigError("train: set a time budget or trials (or both); with neither the search never ends")
    job = AnomalySearch(X, label_vector(train_df[target] if target else None, classes, len(train_df)),
                        default_detectors(settings, X.shape[1]), cfg.seed, settings.min_labels, budget, n_trials)
    study = anomaly_study_name(ws, row["id"])
    tracker = tracker_for(ws)
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study,
            "modelloop.task": "anomaly_detection"}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        def on_trial(rec: Any) -> None:
            with tracker.run(f"trial-{rec.number}-{rec.family}", parent=run_id,
                             tags={"modelloop.state": rec.state}) as trial_run:
                tracker.log(trial_run, params={"detector": rec.family, **rec.params},
                            metrics={"value": rec.value} if rec.value is not None else {})

        result, chosen = run_anomaly_search(job, storage=ws.optuna_url, study_name=study,
                                            work_dir=ws.study_dir(study), on_trial=on_trial, progress=progress)
        members = fit_members(chosen["members"], X, cfg.seed)
        selection = {**chosen["selection"], "contamination": share, "budget": alert_line, "reasons": settings.reasons}
        model = AnomalyModel.from_members(schema=schema, encoder=encoder, members=members,
                                          weights=chosen["weights"], X_train=X, threshold=1.0 - share,
                                          classes=classes, selection=selection)
        model = _with_verdicts(model, X, job.y, cfg.seed)
        selection = model.selection_
        model.cleaning_plan_ = cleaning_plan(ws, row)
        model.target_ = target  # the labels' column, for the evaluation page's labelled charts
        result.model, result.threshold = model, model.threshold_
        evaluation = evaluate_anomaly(model, test_df, target)
        tracker.log(run_id, params={"task": "anomaly", "dataset": row["id"], "selection": selection["chosen"],
                                    "threshold": model.threshold_},
                    metrics={f"test_{k}": v for k, v in evaluation["metrics"].items() if v is not None})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    summary = record_model(ws, row, run_id, version, model, result, evaluation, "anomaly", kind, started, test_df,
                           register_as_production, family="anomaly")
    return {**summary, "selection": selection, "detectors": model.describe()["members"],
            "features": {"used": encoder.columns, "dropped": encoder.dropped}}


def evaluate_anomaly(model: AnomalyModel, df: pd.DataFrame, target: str | None) -> dict[str, Any]:
    """The head's figures on the labelled rows of ``df`` (none: empty metrics, the row count)."""
    from ..heads import head_for

    head = head_for({"task": "anomaly", "classes": model.classes_, "threshold": model.threshold_})
    y = label_vector(df[target] if target else None, model.classes_, len(df))
    labelled = y >= 0
    budget = model.selection_.get("budget") or {}
    if not labelled.any():
        flagged = float(np.mean(model.predict(df) > model.threshold_)) if len(df) else 0.0
        return {"metrics": alert_rates(flagged, budget), "rows": len(df), "labelled": 0, "flagged_share": flagged}
    scores = model.predict_proba(df)
    out = head.evaluate(y[labelled], scores[labelled])
    out["rows"] = len(df)
    out["flagged_share"] = float(np.mean(scores[:, 0] > model.threshold_))
    out["metrics"].update(alert_rates(out["flagged_share"], budget))  # the alerts the threshold raises
    return out


def _with_verdicts(model: AnomalyModel, X: np.ndarray, y: np.ndarray, seed: int) -> AnomalyModel:
    """The model with a booster fitted on the labelled train rows when they are enough (``booster.py``)."""
    from .booster import fit_booster

    booster, weight, info = fit_booster(model.member_scores(X, training=True), X, y, seed)
    if booster is None:
        model.selection_ = {**model.selection_, "booster": info}
        return model
    return model.with_booster(booster, weight, X, {"booster": info})
