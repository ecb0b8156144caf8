"""The evaluate stage: score a registered model on its frozen test split or on any labeled file.

What the figures and the page hold for a kind of output is its head's decision
(:mod:`modelloop.families.heads`); ``evaluate_predictions`` and ``render_report`` take the output kind
(``info.task``: one of ``TASKS``) and ask its head.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, shown_number
from ..families.heads import KINDS, BaseHead, class_indices, head_for
from ..workspace import Workspace

__all__ = ["TASKS", "evaluate", "evaluate_model", "evaluate_predictions", "figure_interval", "label_indices",
           "model_inputs", "render_report", "scores_of", "write_evaluation_report"]

TASKS = tuple(KINDS)  # the output kinds a registered model version records as ``info.task``


def label_indices(model: Any, y: pd.Series, target: str) -> np.ndarray:
    """Map labels to the model's class indices by their text, so 1, 1.0 and '1' agree."""
    return class_indices(list(model.classes_), y, target)


def _head(task: str, classes: Any = None, threshold: float | None = None) -> BaseHead:
    """The head of output kind ``task`` (a ConfigError naming the kinds for another)."""
    if task not in KINDS:
        raise ConfigError(f"task: '{task}' is not an evaluation task; allowed: {', '.join(TASKS)}")
    try:
        return head_for({"task": task, "classes": None if classes is None else list(classes),
                         "threshold": threshold})
    except ValueError as exc:  # a classification head without classes
        raise DataError(f"a {task} evaluation needs the model's classes, got {classes!r}") from exc


def evaluate_predictions(task: str, y_true: Any, output: Any, *, classes: list,
                         threshold: float | None = None) -> dict[str, Any]:
    """Metrics (and, for classes, per-class figures and the confusion matrix) as one JSON-ready dict,
    as the head of output kind ``task`` computes them (``evaluation.report.evaluate_classes`` /
    ``evaluate_values``): ``task``, ``rows``, ``threshold``, ``metrics``, ``per_class``,
    ``confusion_matrix``."""
    return _head(task, classes, threshold).evaluate(y_true, np.asarray(output))


def render_report(evaluation: dict, *, title: str, task: str, classes: Sequence[Any], y_true: Any,
                  output: Any, threshold: float | None = None,
                  importances: dict[str, float] | None = None, context: dict | None = None) -> str:
    """One self-contained HTML page: facts, metrics, per-class table and the charts the head of output
    kind ``task`` draws. ``evaluation`` is what :func:`evaluate_predictions` returned for the same
    ``y_true`` and ``output``, which are needed again to draw the curves."""
    from .report import render_page

    head = _head(task, classes, threshold if threshold is not None else evaluation.get("threshold"))
    charts = head.report_charts(y_true, np.asarray(output), evaluation)
    return render_page(evaluation, title=title, kind=task, charts=charts,
                       threshold=head.threshold if head.classes else None,  # a threshold decides between classes
                       importances=importances, context=context)


def scores_of(model: Any, df: pd.DataFrame, target: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The true values and the model's native scores on ``df``'s rows that have a target, in order, as
    the head of output kind ``task`` reads them: what ``evaluate_model`` scores (a family's per-group
    figures of the same test rows take them from here rather than asking the model again)."""
    return _outputs(model, df, target, _model_head(model, task))


# The last (model, frame) scored, held weakly: training's evaluation, its HTML report and a family's
# per-group figures ask for the same test rows' scores one after the other, and a frozen encoder's
# answers are dear (800 texts through the multilingual USE: ~30 s on a loaded machine, three times).
# A dead model or frame never matches (its weak reference is then None); a new call replaces the entry.
_LAST_SCORED: list[tuple[Any, Any, str, type, np.ndarray, np.ndarray]] = []
_LAST_LOCK = threading.Lock()


def _outputs(model: Any, df: pd.DataFrame, target: str, head: BaseHead) -> tuple[np.ndarray, np.ndarray]:
    with _LAST_LOCK:
        for model_ref, frame_ref, kept_target, kind, y, out in _LAST_SCORED:
            if model_ref() is model and frame_ref() is df and kept_target == target and kind is type(head):
                return y.copy(), out.copy()  # a caller may change its arrays in place
    y, out = _score(model, df, target, head)
    try:
        entry = (weakref.ref(model), weakref.ref(df), target, type(head), y, out)
    except TypeError:  # an object without weak references is scored again next time
        return y, out
    with _LAST_LOCK:
        _LAST_SCORED[:] = [entry]
    return y.copy(), out.copy()


def _score(model: Any, df: pd.DataFrame, target: str, head: BaseHead) -> tuple[np.ndarray, np.ndarray]:
    if target not in df.columns:
        raise DataError(f"data has no target column '{target}'; evaluation needs labeled rows")
    df = df[df[target].notna()]
    if df.empty:
        raise DataError(f"data has no rows with a value in target column '{target}'")
    y = head.truth(df[target], target)
    return y, head.native_scores(model, model_inputs(model, df, target))


INTERVAL_ROUNDS = 200       # bootstrap resamples of a test figure's interval
INTERVAL_MAX_ROWS = 50_000  # above it the resamples cost more than the interval tells (it is narrow there)


def figure_interval(model: Any, df: pd.DataFrame, *, target: str, task: str, metric: str) -> dict[str, Any] | None:
    """The 95 % bootstrap interval of ``model``'s ``metric`` on the labeled rows ``df`` (the frozen test
    split): a few hundred test rows move a figure by several points, and a user comparing it with the
    validation score, or two models' figures, should see how far. None when the head has no cheap figure
    for ``metric`` (generated text, rankings) or there are more than ``INTERVAL_MAX_ROWS`` rows."""
    from .metrics import bootstrap_interval

    if hasattr(model, "evaluate_interactions") or len(df) > INTERVAL_MAX_ROWS:
        return None
    head = _model_head(model, task)
    if not head.has_figures or metric not in head.metrics or target not in df.columns:
        return None
    y, out = _outputs(model, df, target, head)  # the evaluation's own scores when it has just run
    if len(y) < 2:
        return None

    def figure(name: str, y_true: np.ndarray, output: np.ndarray, threshold: float | None = None) -> float:
        value = head.figure(name, y_true, output)
        return float("nan") if value is None else value

    low, high = bootstrap_interval(metric, y, out, rounds=INTERVAL_ROUNDS, figure=figure)
    if not (np.isfinite(low) and np.isfinite(high)):  # no resample could compute it (a single class: roc_auc)
        return None
    return {"metric": metric, "low": low, "high": high, "rows": int(len(y)), "rounds": INTERVAL_ROUNDS}


def model_inputs(model: Any, df: pd.DataFrame, target: str) -> pd.DataFrame:
    """``df`` as the model is asked to predict it: without the target column, unless the target is one of
    the model's input columns (a chat's messages: the prompt is every turn before the last, and the
    reference answer is that last turn)."""
    inputs = getattr(getattr(model, "schema", None), "columns", None) or {}
    return df if target in inputs else df.drop(columns=[target], errors="ignore")


def _model_head(model: Any, task: str) -> BaseHead:
    return head_for({"task": task, "classes": getattr(model, "classes_", None),
                     "threshold": getattr(model, "threshold_", None)})


def judged_as_configured(model: Any, cfg: Any) -> Any:
    """``model`` judged by the project's relevance now: a recommender's held-out ratings below the config's
    ``model.relevant_rating`` are no hit, whatever the setting was when it was trained (so the retrain
    gate compares a champion trained before the setting and its challenger on the same figures)."""
    if hasattr(model, "evaluate_interactions"):
        model.relevant_rating_ = getattr(cfg.model, "relevant_rating", None)
    return model


def evaluate_model(model: Any, df: pd.DataFrame, *, target: str, task: str) -> dict[str, Any]:
    """Metrics, per-class figures and confusion matrix of ``model`` on labeled rows ``df``, as the head
    of output kind ``task`` computes them."""
    whole = getattr(model, "evaluate_interactions", None)
    if whole is not None:  # a recommender: its truth is the held-out interactions, not a label column
        return whole(df)
    head = _model_head(model, task)
    y, out = _outputs(model, df, target, head)
    figures = head.evaluate(y, out)
    own = getattr(model, "evaluation_metrics", None)  # a model's figures beside its head's (perplexity)
    if own is not None:
        figures["metrics"] = {**figures["metrics"], **own(df)}
    return figures


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
    from .report import write_report

    target = ws.config.data.target
    task = str(evaluation.get("task") or model.task)  # the output kind the evaluation was computed for
    head = _model_head(model, task)
    y, out = _outputs(model, df, target, head)
    context = {"model": f"{name}:{version}", "dataset": dataset_id, "rows": evaluation["rows"],
               "threshold": getattr(model, "threshold_", None),
               "created_at": dt.datetime.now().isoformat(timespec="seconds")}
    if interval := evaluation.get("interval"):  # how far the figure would move with other rows like these
        context[f"{interval['metric']} 95 % interval"] = f"{shown_number(interval['low'])} to {shown_number(interval['high'])}"
    html = render_report(evaluation, title=f"{name} v{version} evaluation", task=task, classes=head.classes or [],
                         y_true=y, output=out, threshold=getattr(model, "threshold_", None),
                         importances=model.feature_importances(), context=context)
    path = ws.reports_dir / f"evaluation-{name}-v{version}{suffix}.html"
    write_report(path, html)
    return path


def evaluate(ws: Workspace, *, model: str | None = None, data: str | None = None) -> dict[str, Any]:
    """Score the production (or latest, or named) model on its frozen test set or on ``data``."""
    from ..data.ingest import ensure_split, load_dataset
    from ..registry import load_model, resolve_model

    cfg = ws.config
    row = resolve_model(ws, model)
    native = judged_as_configured(load_model(ws, row), cfg)
    task = row["info"]["task"]
    if data:
        df = _labeled_file(ws, row, data)
        source = str(data)
    else:
        drow, full, _ = load_dataset(ws, row["dataset_id"])
        df = full[ensure_split(ws, drow, full) == "test"]
        source = f"test split of dataset {row['dataset_id']}"
    from ..families import label_column, partial_labels

    target = label_column(cfg)
    if target is not None and partial_labels(cfg.task) and (target not in df.columns or not df[target].notna().any()):
        # no labelled row (an anomaly project without data.target): the figures a model gives without labels
        own = getattr(native, "evaluation_metrics", None)
        evaluation = {"metrics": own(df) if own is not None else {}, "rows": len(df), "labelled": 0}
    else:
        evaluation = evaluate_model(native, df, target=str(target), task=task)
        evaluation["interval"] = figure_interval(native, df, target=str(target), task=task, metric=cfg.metric)
    report = write_evaluation_report(ws, native, df, evaluation, name=row["name"], version=row["version"],
                                     dataset_id=row["dataset_id"], suffix="-adhoc" if data else "")
    return {"model": {"name": row["name"], "version": row["version"]}, "data": source,
            "task": task, **evaluation, "report": str(report)}


def _labeled_file(ws: Workspace, row: dict[str, Any], data: str) -> pd.DataFrame:
    """``evaluate --data``: the labeled file (a path from the current folder) read as the model's family
    reads ``data.source`` (``Family.read_source``: a folder of class folders of images, a table of image
    paths), else as a table (a CSV in ``project_encoding``, as ``predict --data`` reads one). A table
    reader would take a folder for one of texts."""
    from ..data.encoding import project_encoding
    from ..data.sources import read_table
    from ..families import family_of

    cfg = ws.config
    reader = getattr(family_of(row), "read_source", None)
    if reader is None:  # a CSV in the encoding predict reads one in: with data.sources, the one they agree on
        return read_table(data, root=Path.cwd(), encoding=project_encoding(cfg.data), delimiter=cfg.data.delimiter,
                          decimal=cfg.data.decimal)[0]
    path = Path(data) if Path(data).is_absolute() else Path.cwd() / data
    own = cfg.data.model_copy(update={"source": str(path), "sources": [], "query": None, "format": "auto"})
    return reader(cfg.model_copy(update={"data": own}))[0]
