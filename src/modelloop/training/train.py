"""The train stage: dataset version -> the family's search -> test evaluation -> registered model version.

The family serving the config's task does the work (``families.<name>.stage``) and registers through
:func:`record_model`, which writes the catalog rows every family shares. The first model of a project
becomes ``production``; later ones wait for ``modelloop promote`` (or the retrain gate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import config_hash
from ..registry import PRODUCTION
from ..workspace import Workspace

__all__ = ["record_model", "train"]


def train(ws: Workspace, *, budget: float | None = None, trials: int | None = None,
          dataset: str | None = None, warm_start: list[dict] | None = None, kind: str = "train",
          progress: Callable[[int, float], None] | None = None,
          register_as_production: bool | None = None) -> dict[str, Any]:
    """Search, fit, evaluate on the frozen test split, register: the family serving the config's
    task does the work. Returns a JSON-ready summary."""
    from ..data.ingest import dataset_row
    from ..families import family_for_task

    if ws.config.task is None or ws.config.task_inferred is not None:
        dataset_row(ws, dataset)  # settles a left-out task as inferred for the version: it picks the family
    return family_for_task(ws.config.task).train(
        ws, budget=budget, trials=trials, dataset=dataset, warm_start=warm_start, kind=kind, progress=progress,
        register_as_production=register_as_production)


def record_model(ws: Workspace, row: dict, run_id: str, version: int, model: Any, result: Any,
                 evaluation: dict, task: str, kind: str, started: float, test_df: pd.DataFrame,
                 register_as_production: bool | None, *, family: str, report: Path | None = None) -> dict[str, Any]:
    """Catalog rows for the run and the model version (with the ``family`` that made it and the head
    it predicts through); the first model becomes production. ``report``: the evaluation page a family
    wrote itself (e.g. generated answers side by side), instead of the classification/regression one."""
    from ..families.heads import KINDS

    import datetime as dt

    from ..catalog import utcnow
    from ..evaluation.evaluate import figure_interval, write_evaluation_report

    cfg, cat = ws.config, ws.catalog
    name = cfg.name
    interval = figure_interval(model, test_df, target=cfg.data.target, task=task, metric=cfg.metric)
    evaluation = {**evaluation, "interval": interval}  # the report's facts show it
    if report is None:
        report = write_evaluation_report(ws, model, test_df, evaluation, name=name, version=version,
                                         dataset_id=row["id"])
    search = {"metric": cfg.metric, "direction": result.direction,
              "validation_score": result.validation_score, "validation_metric": result.metric,
              "threshold": result.threshold,
              "best_family": result.best_single.family, "best_params": result.best_single.params,
              "ensemble": result.ensemble, "trials": len(result.trials),
              "resumed_trials": result.resumed_trials, "latency": result.latency,
              "cv": getattr(result, "cv", None),
              "trial_states": pd.Series([t.state for t in result.trials]).value_counts().to_dict()}
    cat.add_run(id=run_id, project=name, dataset_id=row["id"], config_hash=config_hash(cfg),
                kind=kind, params=search, metrics=evaluation["metrics"],
                artifacts={"report": str(report)},
                started_at=dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None),
                ended_at=utcnow())
    info = {"task": task, "head": KINDS[task].name, "test_interval": interval, "task_inferred": cfg.task_inferred, "threshold": result.threshold,
            "classes": _jsonable(model.classes_), "description": model.describe(), "report": str(report),
            "search": search}
    cat.add_model(name=name, version=version, run_id=run_id, dataset_id=row["id"],
                  formats={"native": f"models:/{name}/{version}"}, metrics=evaluation["metrics"],
                  input_schema=model.schema.to_dict(), info=info, family=family)
    first = cat.get_alias(name, PRODUCTION) is None
    promoted = register_as_production if register_as_production is not None else first
    if promoted:
        from ..registry import promote

        promote(ws, f"{name}:{version}", reason="first model of the project" if first else kind)
    return {"model": {"name": name, "version": version}, "dataset": row["id"], "run_id": run_id,
            "task": task, "family": family, "task_inferred": cfg.task_inferred, "metric": cfg.metric,
            "validation_score": result.validation_score,
            # what validation_score measures: train.metric, except a search that minimises a loss (generative)
            "validation_metric": result.metric,
            "test_metrics": evaluation["metrics"],
            # the 95 % bootstrap interval of train.metric on the test rows (None where a head has no cheap figure)
            "test_interval": interval,
            "rows": {"train": int(row["rows"]) - int(evaluation["rows"]), "test": evaluation["rows"]},
            "best_family": result.best_single.family, "ensemble": result.ensemble,
            "families": model.describe().get("families"), "latency": result.latency,
            "threshold": result.threshold, "trials": len(result.trials),
            # tabular: the validation score's std over folds, its repeats, the threshold's choice
            "cv_spread": (getattr(result, "cv", None) or {}).get("spread"),
            "cv": getattr(result, "cv", None),
            "resumed_trials": result.resumed_trials, "production": bool(promoted),
            "report": str(report), "seconds": round(time.time() - started, 1)}


def _jsonable(values: Any) -> list | None:
    """The classes as JSON values; None for a regressor, which has none."""
    if values is None:
        return None
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)]
