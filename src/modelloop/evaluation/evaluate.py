"""The evaluate stage: score a registered model on its frozen test split or on any labeled file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, cap_list
from ..workspace import Workspace

__all__ = ["evaluate", "evaluate_model", "label_indices", "write_evaluation_report"]


def label_indices(model: Any, y: pd.Series, target: str) -> np.ndarray:
    """Map labels to the model's class indices by their text, so 1, 1.0 and '1' agree."""
    def norm(v: Any) -> str:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        return str(v)

    index = {norm(c): i for i, c in enumerate(model.classes_)}
    mapped = y.map(lambda v: index.get(norm(v), -1))
    unknown = y[mapped.to_numpy() < 0]
    if len(unknown):
        raise DataError(f"target '{target}' holds labels the model never saw, e.g. {unknown.iloc[0]!r}; "
                        f"known labels: {cap_list(index)}")
    return mapped.to_numpy(dtype=int)


def _outputs(model: Any, df: pd.DataFrame, target: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    if target not in df.columns:
        raise DataError(f"data has no target column '{target}'; evaluation needs labeled rows")
    df = df[df[target].notna()]
    if df.empty:
        raise DataError(f"data has no rows with a value in target column '{target}'")
    X = df.drop(columns=[target])
    if task == "regression":
        y = pd.to_numeric(df[target], errors="coerce")
        if y.isna().any():
            bad = df[target][y.isna()].unique()
            raise DataError(f"target '{target}' must hold numbers for a regression model, got "
                            f"{cap_list(bad, show=repr)}")
        return y.to_numpy(dtype=float), np.asarray(model.predict(X), dtype=float)
    return label_indices(model, df[target], target), np.asarray(model.predict_proba(X))


def evaluate_model(model: Any, df: pd.DataFrame, *, target: str, task: str) -> dict[str, Any]:
    """Metrics, per-class figures and confusion matrix of ``model`` on labeled rows ``df``, as the head
    of output kind ``task`` computes them."""
    from ..families.heads import head_for

    y, out = _outputs(model, df, target, task)
    head = head_for({"task": task, "classes": getattr(model, "classes_", None),
                     "threshold": getattr(model, "threshold_", None)})
    return head.evaluate(y, out)


def write_evaluation_report(ws: Workspace, model: Any, df: pd.DataFrame, evaluation: dict, *, name: str,
                            version: int, dataset_id: str | None, suffix: str = "") -> Path:
    """The HTML report (ROC/PR curves, confusion matrix, calibration, importances) for a model."""
    own = getattr(model, "evaluation_html", None)
    if own is not None:  # a model that draws its own page (an anomaly detector: scores, threshold, reasons)
        from .report import write_report as write_page

        path = ws.reports_dir / f"evaluation-{name}-v{version}{suffix}.html"
        write_page(path, own(df, evaluation, title=f"{name} v{version} evaluation",
                             context={"model": f"{name}:{version}", "dataset": dataset_id}))
        return path
    from .report import render_report, write_report

    target = ws.config.data.target
    task = "regression" if getattr(model, "task", None) == "regression" else (
        "binary" if len(model.classes_) == 2 else "multiclass")
    y, out = _outputs(model, df, target, task)
    context = {"model": f"{name}:{version}", "dataset": dataset_id, "rows": evaluation["rows"],
               "threshold": getattr(model, "threshold_", None),
               "created_at": dt.datetime.now().isoformat(timespec="seconds")}
    html = render_report(evaluation, title=f"{name} v{version} evaluation", task=task,
                         classes=[] if task == "regression" else list(model.classes_), y_true=y,
                         output=out, threshold=getattr(model, "threshold_", None),
                         importances=model.feature_importances(), context=context)
    path = ws.reports_dir / f"evaluation-{name}-v{version}{suffix}.html"
    write_report(path, html)
    return path


def evaluate(ws: Workspace, *, model: str | None = None, data: str | None = None) -> dict[str, Any]:
    """Score the production (or latest, or named) model on its frozen test set or on ``data``."""
    from ..data.ingest import ensure_split, load_dataset
    from ..data.sources import read_table
    from ..registry import load_model, resolve_model

    cfg = ws.config
    row = resolve_model(ws, model)
    native = load_model(ws, row)
    task = row["info"]["task"]
    if data:
        df, _ = read_table(data, root=Path.cwd(), encoding=cfg.data.encoding)
        source = str(data)
    else:
        drow, full, _ = load_dataset(ws, row["dataset_id"])
        df = full[ensure_split(ws, drow, full) == "test"]
        source = f"test split of dataset {row['dataset_id']}"
    evaluation = evaluate_model(native, df, target=cfg.data.target, task=task)
    report = write_evaluation_report(ws, native, df, evaluation, name=row["name"], version=row["version"],
                                     dataset_id=row["dataset_id"], suffix="-adhoc" if data else "")
    return {"model": {"name": row["name"], "version": row["version"]}, "data": source,
            "task": task, **evaluation, "report": str(report)}
