"""The tabular family's train stage: the dataset's train split -> folds -> the search over its
estimators (ensembles, tuned threshold, latency limit) -> test evaluation -> registration.

Reads and writes only through the workspace (catalog, tracker, reports); the search itself is the pure
:func:`~modelloop.families.tabular.search.run_search`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from ...config import config_hash
from ...data.ingest import ensure_split, load_dataset
from ...data.split import fold_groups, fold_scheme, make_folds
from ...evaluation.evaluate import evaluate_model
from ...registry import tracker_for
from ...training.train import record_model
from ...workspace import Workspace
from ..heads import head_kind
from . import search
from .search import SearchSettings, cv_repeats, run_search
from .task import interactions_warning, ordinal_warning, padded_classes_warning, text_warning

log = logging.getLogger("modelloop.train")

__all__ = ["study_name", "train_tabular"]


def study_name(ws: Workspace, dataset_id: str) -> str:
    """A search is resumable while the dataset and everything but the budget (and ``train.parallel``) stay
    the same, and so does what its trials' values mean (``search.TRIAL_SCORING``)."""
    cfg = ws.config
    train = cfg.train.model_dump(exclude={"budget", "trials", "parallel"})  # parallel: resumes either way
    key = json.dumps([train, cfg.metric, cfg.split.model_dump(), cfg.task, cfg.seed,
                      config_hash(cfg, "data"), search.TRIAL_SCORING], sort_keys=True, default=str)
    import hashlib

    return f"{cfg.name}-{dataset_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _grouped_suffix(scheme: str) -> str:
    """Folds grouped by ``data.group`` under a stratified or random split (``split.fold_scheme``) are other
    folds than before they were grouped: a study of the old folds is not resumed (its fingerprint differs).
    ``-g``: stratified groups; ``-gs``: groups dealt in a seeded order (since 2026-12-06: the repeats of a
    small table were identical partitions before, and a stratified search that cannot stratify its groups
    deals them too); ``-gh``: one holdout of whole groups (train.cv_folds 1, since 2026-12-06: it drew rows)."""
    return {"stratified-group": "-g", "grouped": "-gs", "group-holdout": "-gh"}.get(scheme, "")


def train_tabular(ws: Workspace, *, budget: float | None = None, trials: int | None = None,
                  dataset: str | None = None, warm_start: list[dict] | None = None, kind: str = "train",
                  progress: Callable[[int, float], None] | None = None,
                  register_as_production: bool | None = None) -> dict[str, Any]:
    """The tabular family's train stage: the search over its estimators, ensembles and threshold."""
    cfg = ws.config
    row, df, schema = load_dataset(ws, dataset)
    assert cfg.task is not None and cfg.split.strategy is not None  # settled for this version by load_dataset
    side = ensure_split(ws, row, df)
    train_df = df[side == "train"].reset_index(drop=True)
    test_df = df[side == "test"].reset_index(drop=True)
    target = cfg.data.target
    task = head_kind(cfg.task, df[target])
    run_budget = budget if budget is not None else cfg.train.budget
    # repeated k-fold on a small table (search.cv_repeats); a time or group split is one partition, and so
    # are folds of one group each (data.group with no more groups than folds): repeats of it would be copies
    groups = fold_groups(train_df, strategy=cfg.split.strategy, n_folds=cfg.train.cv_folds, target=target,
                         group=cfg.data.group)
    repeats = cv_repeats(len(train_df), run_budget) \
        if cfg.split.strategy in ("random", "stratified") and cfg.train.cv_folds > 1 \
        and not (groups is not None and groups.one_partition) else 1
    folds = [fold for r in range(repeats)
             for fold in make_folds(train_df, strategy=cfg.split.strategy, n_folds=cfg.train.cv_folds,
                                    seed=cfg.seed + r, target=target, time=cfg.data.time, group=cfg.data.group)]
    settings = SearchSettings(
        task=task, metric=cfg.metric, families=list(cfg.train.families),
        budget=run_budget, cv_repeats=repeats,
        n_trials=trials if trials is not None else cfg.train.trials, seed=cfg.seed,
        class_weight=cfg.train.class_weight, ensemble=cfg.train.ensemble,
        ensemble_size=cfg.train.ensemble_size, stack=cfg.train.stack, tune_threshold=cfg.train.tune_threshold,
        max_latency_ms=cfg.train.max_latency_ms, parallel=cfg.train.parallel, latency_fn=_latency_fn(train_df.drop(columns=[target]), cfg.seed),
        ray_address=cfg.compute.address if cfg.compute.engine == "ray" else None)
    # repeats change the folds (the study's fingerprint): a search of another repeat count is another study
    scheme = fold_scheme(train_df, strategy=cfg.split.strategy, n_folds=cfg.train.cv_folds, target=target,
                         group=cfg.data.group)
    study = study_name(ws, row["id"]) + (f"-r{repeats}" if repeats > 1 else "") + _grouped_suffix(scheme)
    tracker = tracker_for(ws)
    started = time.time()
    tags = {"modelloop.dataset": row["id"], "modelloop.kind": kind, "modelloop.study": study}
    with tracker.run(f"{kind}-{row['id']}", tags=tags) as run_id:
        def on_trial(rec: Any) -> None:
            with tracker.run(f"trial-{rec.number}-{rec.family}", parent=run_id,
                             tags={"modelloop.state": rec.state}) as trial_run:
                tracker.log(trial_run, params={"family": rec.family, **rec.params},
                            metrics={f"valid_{cfg.metric}": rec.value} if rec.value is not None else {})

        result = run_search(train_df.drop(columns=[target]), train_df[target], schema=schema,
                            folds=folds, settings=settings, storage=ws.optuna_url, study_name=study,
                            work_dir=ws.study_dir(study), on_trial=on_trial, progress=progress,
                            warm_start=warm_start)
        model = result.model
        from ...data.stages import cleaning_plan

        model.cleaning_plan_ = cleaning_plan(ws, row)
        evaluation = evaluate_model(model, test_df, target=target, task=task)
        tracker.log(run_id, params={"metric": cfg.metric, "task": task, "dataset": row["id"],
                                    "best_family": result.best_single.family,
                                    "threshold": result.threshold},
                    metrics={**{f"test_{k}": v for k, v in evaluation["metrics"].items()},
                             f"valid_{cfg.metric}": result.validation_score})
        version = int(tracker.log_model(run_id, model, name=cfg.name))
    out = record_model(ws, row, run_id, version, model, result, evaluation, task, kind, started,
                       test_df, register_as_production, family="tabular")
    # what the user may want to change in modelloop.yaml: logged (stderr) and in the JSON
    warnings = [w for w in [groups.warning if groups is not None else None,
                            ordinal_warning(train_df[target], target) if task == "multiclass" else None,
                            padded_classes_warning(train_df[target], target) if task != "regression" else None,
                            text_warning(schema.columns, {schema.target, schema.id}),
                            interactions_warning(schema.columns, {schema.target, schema.id}, target)] if w]
    for w in warnings:
        log.warning("%s", w)
    return {**out, "warnings": warnings, "budget": _budget_report(run_budget, result)}


def _budget_report(budget: float | None, result: Any) -> dict[str, Any]:
    """How ``train.budget`` was spent: the search within it (every trial bounded by its deadline; the
    trials it cut short), and choosing the ensemble or stack and refitting on all rows after it."""
    return {"seconds": budget, **{f"{k}_seconds": v for k, v in (result.seconds or {}).items()},
            "trials_stopped_by_budget": sum(bool(t.stopped_by_budget) for t in result.trials)}


def _latency_fn(X: pd.DataFrame, seed: int) -> Callable[[Any], tuple[float, str]]:
    """How ``train.max_latency_ms`` is checked: the candidate loaded and run as ``modelloop serve`` would."""
    sample = X.sample(min(len(X), 64), random_state=seed)

    def measure(model: Any) -> tuple[float, str]:
        from .variants import served_latency

        return served_latency(model, sample)

    return measure


