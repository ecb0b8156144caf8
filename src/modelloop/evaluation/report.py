"""Evaluation results as a JSON-ready dict and as one self-contained HTML page.

``evaluate_predictions`` turns labels and model outputs into the figures that ``modelloop evaluate
--json`` prints; ``render_report`` draws the same evaluation as a page that works offline (inline
CSS, charts as inline SVG, no scripts) and ``write_report`` puts it on disk atomically.

Conventions follow :mod:`modelloop.evaluation.metrics`: for classes (``evaluate_classes``),
``y_true`` holds class indices ``0..K-1`` (or the labels themselves, matched against ``classes``
by their text) and ``output`` is an ``(n, K)`` probability array in ``classes`` order; for values
(``evaluate_values``) both are float arrays. Which of the two an output kind is, and which charts
it gets, is its head's decision (:mod:`modelloop.families.heads`); ``evaluate_predictions`` and
``render_report`` by output kind live in :mod:`modelloop.evaluation.evaluate`.

Charts are built on ``matplotlib.figure.Figure`` with an Agg canvas and never through pyplot, as
matplotlib recommends for servers: nothing is registered globally, so no figure can leak and the
page can be rendered from any thread; each figure is cleared as soon as its SVG is taken.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from ..errors import ConfigError, DataError, cap_list, shown_number
from .charts import chart_figure, chart_svg, chart_text
from .metrics import classification_metrics, direction, labels_from_proba, regression_metrics

__all__ = ["check_threshold", "class_charts", "evaluate_classes", "evaluate_values", "prepare_classes",
           "prepare_values", "render_page", "score_chart", "value_charts", "write_report"]

_MAX_CURVE_CLASSES = 10      # one-vs-rest curves drawn for at most this many classes
_MAX_SCATTER = 5_000         # points in the predicted-vs-actual scatter
_TOP_FEATURES = 20           # bars in the importance chart
_MAX_CURVE_POINTS = 2_000    # vertices kept per ROC/PR curve (keeps the SVG small on big test sets)
_ANNOTATE_UP_TO = 20         # confusion matrices larger than this lose their per-cell counts
_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d",
            "#7c3aed", "#ca8a04")


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------

def _label_key(value: Any) -> str:
    """Labels compare by their text, so 1, 1.0, '1' and np.int64(1) name the same class."""
    value = _json_scalar(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _class_indices(y_true: Any, labels: Sequence[Any]) -> np.ndarray:
    y = np.asarray(y_true)
    k = len(labels)
    if y.ndim != 1:
        raise DataError(f"y_true must be one-dimensional, got shape {y.shape}")
    if y.dtype.kind in "biuf":
        yf = y.astype(float)
        ok = np.isfinite(yf).all() and (yf == np.round(yf)).all() and yf.min() >= 0 and yf.max() < k
        if not ok:
            raise DataError(f"y_true must hold class indices 0..{k - 1} (one per entry of classes), "
                            f"got values between {yf.min()} and {yf.max()}")
        return yf.astype(int)
    index = {_label_key(c): i for i, c in enumerate(labels)}
    mapped = np.array([index.get(_label_key(v), -1) for v in y], dtype=int)
    if (mapped < 0).any():
        bad = y[mapped < 0][0]
        raise DataError(f"y_true holds the label {bad!r}, which is not in classes "
                        f"({cap_list(index)}); pass class indices or one of these labels")
    return mapped


def prepare_values(y_true: Any, output: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y, pred)``: two finite float vectors of the same length."""
    y = np.asarray(y_true, dtype=float).ravel()
    pred = np.asarray(output, dtype=float).ravel()
    if len(y) != len(pred):
        raise DataError(f"y_true has {len(y)} rows but output has {len(pred)}")
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise DataError("y_true and output must be finite numbers (no NaN or inf) to be evaluated")
    if len(y) == 0:
        raise DataError("nothing to evaluate: y_true is empty")
    return y, pred


def prepare_classes(y_true: Any, output: Any, classes: Sequence[Any], *, kind: str,
                    exactly: int | None = None) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Validated ``(y, proba, labels)``: class indices and an ``(n, K)`` float array; ``exactly``: the
    number of classes the output kind has (2 for a binary head), None for any number from 2."""
    labels = [_json_scalar(c) for c in classes]
    keys = [_label_key(c) for c in labels]
    if len(set(keys)) != len(keys):
        raise DataError(f"classes must be distinct, got {keys}")
    if exactly is not None and len(labels) != exactly:
        raise DataError(f"a {kind} evaluation needs exactly {exactly} classes, got {len(labels)}: {keys}")
    if len(labels) < 2:
        raise DataError(f"a classification evaluation needs at least 2 classes, got {keys}")
    proba = np.asarray(output, dtype=float)
    if proba.ndim != 2 or proba.shape[1] != len(labels):
        raise DataError(f"output must be an (n, {len(labels)}) probability array in classes order, "
                        f"got shape {proba.shape}")
    if not np.isfinite(proba).all():
        raise DataError("output holds NaN or inf probabilities; check the model's predict_proba")
    if proba.shape[0] == 0:
        raise DataError("nothing to evaluate: y_true is empty")
    y = _class_indices(y_true, labels)
    if len(y) != proba.shape[0]:
        raise DataError(f"y_true has {len(y)} rows but output has {proba.shape[0]}")
    return y, proba, labels


def check_threshold(threshold: float | None) -> float | None:
    """A decision threshold on ``p(class 1)`` as a float (None: argmax); a ConfigError outside [0, 1].
    Only a head whose classes have one passes it (a binary head); others pass None."""
    if threshold is None:
        return None
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"threshold: must be a probability between 0 and 1, got {threshold}")
    return t


# ---------------------------------------------------------------------------------------------------
# JSON figures
# ---------------------------------------------------------------------------------------------------

def _json_scalar(value: Any) -> Any:
    """A plain Python value json can write: numpy scalars unwrapped, NaN/inf -> None, others -> str."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _per_class(y: np.ndarray, pred: np.ndarray, labels: list[Any]) -> dict[str, dict[str, Any]]:
    idx = list(range(len(labels)))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    return {_label_key(lab): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, lab in enumerate(labels)}


def evaluate_classes(kind: str, y_true: Any, output: Any, *, classes: Sequence[Any], threshold: float | None = None,
                     exactly: int | None = None) -> dict[str, Any]:
    """Metrics, per-class figures and confusion matrix of class probabilities, as one JSON-ready dict.

    The result holds ``task`` (the output ``kind``), ``metrics`` (the registry's figures; NaN, e.g.
    ROC-AUC with one class present, becomes ``None``), ``per_class`` (``{label text: {precision,
    recall, f1, support}}``), ``confusion_matrix`` (``{"labels": [...], "matrix": [[...]]}``, rows =
    true class), ``rows`` and ``threshold`` (the decision threshold applied, or None).
    """
    y, out, labels = prepare_classes(y_true, output, classes, kind=kind, exactly=exactly)
    thr = check_threshold(threshold)
    figures = classification_metrics(y, out, threshold=thr)
    pred = labels_from_proba(out, thr)
    matrix = skm.confusion_matrix(y, pred, labels=list(range(len(labels))))
    return {"task": kind, "rows": int(len(y)), "threshold": thr, "per_class": _per_class(y, pred, labels),
            "confusion_matrix": {"labels": labels, "matrix": matrix.astype(int).tolist()},
            "metrics": _json_figures(figures)}


def evaluate_values(kind: str, y_true: Any, output: Any) -> dict[str, Any]:
    """``evaluate_classes``' dict for predicted values: ``per_class``, ``confusion_matrix`` and
    ``threshold`` are None."""
    y, pred = prepare_values(y_true, output)
    return {"task": kind, "rows": int(len(y)), "threshold": None, "per_class": None, "confusion_matrix": None,
            "metrics": _json_figures(regression_metrics(y, pred))}


def _json_figures(figures: Mapping[str, float]) -> dict[str, Any]:
    return {name: _json_scalar(float(v)) for name, v in figures.items()}


# ---------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------

@dataclass
class _Chart:
    title: str
    svg: str | None        # None: the chart cannot be drawn for this data; ``note`` says why
    note: str = ""
    wide: bool = False


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= _MAX_CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, _MAX_CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def _curve_classes(y: np.ndarray, k: int) -> tuple[list[int], str]:
    """Classes that get a one-vs-rest curve: both outcomes present, the most frequent first."""
    if k == 2:
        return ([1], "") if 0 < (y == 1).sum() < len(y) else ([], "needs both classes in y_true")
    support = np.bincount(y, minlength=k)
    usable = [c for c in np.argsort(-support, kind="stable") if 0 < support[c] < len(y)]
    note = ""
    if len(usable) > _MAX_CURVE_CLASSES:
        note = f"one-vs-rest for the {_MAX_CURVE_CLASSES} most frequent of {len(usable)} classes"
    elif usable:
        note = "one-vs-rest, one curve per class"
    return sorted(int(c) for c in usable[:_MAX_CURVE_CLASSES]), note or "needs two classes in y_true"


def _roc_chart(y: np.ndarray, proba: np.ndarray, labels: list[Any]) -> _Chart:
    chosen, note = _curve_classes(y, len(labels))
    if not chosen:
        return _Chart("ROC curve", None, note)
    with chart_figure() as fig:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="chance")
        for n, c in enumerate(chosen):
            fpr, tpr, _ = skm.roc_curve(y == c, proba[:, c])
            auc = skm.auc(fpr, tpr)
            fpr, tpr = _thin(fpr, tpr)
            name = "" if len(labels) == 2 else f"{chart_text(labels[c], 16)} "
            ax.plot(fpr, tpr, color=_PALETTE[n % len(_PALETTE)], lw=1.8, label=f"{name}AUC {auc:.3f}")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
        return _Chart("ROC curve", chart_svg(fig, "roc"), note)


def _pr_chart(y: np.ndarray, proba: np.ndarray, labels: list[Any]) -> _Chart:
    chosen, note = _curve_classes(y, len(labels))
    if not chosen:
        return _Chart("Precision-recall curve", None, note)
    with chart_figure() as fig:
        ax = fig.subplots()
        for n, c in enumerate(chosen):
            positive = y == c
            prec, rec, _ = skm.precision_recall_curve(positive, proba[:, c], drop_intermediate=True)
            ap = skm.average_precision_score(positive, proba[:, c])
            rec, prec = _thin(rec, prec)
            name = "" if len(labels) == 2 else f"{chart_text(labels[c], 16)} "
            color = _PALETTE[n % len(_PALETTE)]
            ax.step(rec, prec, where="post", color=color, lw=1.8, label=f"{name}AP {ap:.3f}")
            if len(labels) == 2:
                ax.axhline(positive.mean(), ls="--", color="#9ca3af", lw=1,
                           label=f"base rate {positive.mean():.3f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="upper right", fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
        return _Chart("Precision-recall curve", chart_svg(fig, "pr"), note)


def _confusion_chart(matrix: np.ndarray, labels: list[Any]) -> _Chart:
    k = len(labels)
    side = min(3.5 + 0.45 * k, 12.0)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    with chart_figure(side + 1.2, side) as fig:
        ax = fig.subplots()
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
        if k <= _ANNOTATE_UP_TO:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", fontsize=9,
                            color="white" if share[i, j] > 0.6 else "#111827")
        if k <= 40:
            names = [chart_text(lab, 14) for lab in labels]
            ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
            ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        # the rows' title level with the top of the class names, horizontal and tied to the axes: rotated
        # beside an equal-aspect image, constrained layout left it at the figure's edge, and the SVG text
        # (drawn by the browser) was cut there ('true' half visible in the images and anomaly reports)
        ax.set_ylabel("true", rotation=0, ha="right", va="bottom")
        ax.yaxis.set_label_coords(-0.02, 1.01)
        note = "counts per cell; colour = share of the true class's rows"
        if k > _ANNOTATE_UP_TO:
            note = f"{k} classes: colour = share of the true class's rows (counts in the JSON output)"
        return _Chart("Confusion matrix", chart_svg(fig, "confusion"), note, wide=k > 10)


def _calibration_chart(y: np.ndarray, proba: np.ndarray) -> _Chart:
    from sklearn.calibration import calibration_curve

    if not 0 < y.sum() < len(y):
        return _Chart("Calibration", None, "needs both classes in y_true")
    # Quantile bins: with rare positives, equal-width bins would put nearly every row in the first.
    frac, mean = calibration_curve(y, proba[:, 1], n_bins=10, strategy="quantile")
    with chart_figure() as fig:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="perfectly calibrated")
        ax.plot(mean, frac, marker="o", color=_PALETTE[0], lw=1.8, label="model")
        ax.set(xlabel="mean predicted probability", ylabel="observed positive share", xlim=(0, 1),
               ylim=(0, 1.01))
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
        return _Chart("Calibration (reliability)", chart_svg(fig, "calibration"), "10 bins of equal row count")


def _importance_chart(importances: Mapping[str, float] | None) -> _Chart | None:
    if not importances:
        return None
    items = [(str(k), float(v)) for k, v in importances.items() if v is not None and math.isfinite(v)]
    items.sort(key=lambda kv: abs(kv[1]), reverse=True)
    top = items[:_TOP_FEATURES][::-1]
    if not top:
        return None
    with chart_figure(6.5, 1.2 + 0.3 * len(top)) as fig:
        ax = fig.subplots()
        ax.barh(range(len(top)), [v for _, v in top], color=_PALETTE[0])
        ax.set_yticks(range(len(top)), [chart_text(k, 32) for k, _ in top], fontsize=8)
        ax.set(xlabel="importance")
        ax.grid(axis="x", alpha=0.3)
        note = f"top {len(top)} of {len(items)} features" if len(items) > len(top) else ""
        return _Chart("Feature importance", chart_svg(fig, "importance"), note)


def _scatter_chart(y: np.ndarray, pred: np.ndarray) -> _Chart:
    idx = np.arange(len(y))
    if len(y) > _MAX_SCATTER:
        idx = np.sort(np.random.default_rng(0).choice(len(y), _MAX_SCATTER, replace=False))
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    with chart_figure(5.5, 5.0) as fig:
        ax = fig.subplots()
        ax.scatter(y[idx], pred[idx], s=6, alpha=0.4, color=_PALETTE[0], linewidths=0)
        ax.plot([lo, hi], [lo, hi], ls="--", color="#9ca3af", lw=1, label="perfect prediction")
        ax.set(xlabel="actual", ylabel="predicted")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
        note = f"a random sample of {len(idx):,} of {len(y):,} rows" if len(idx) < len(y) else ""
        return _Chart("Predicted vs actual", chart_svg(fig, "scatter"), note)


def _residual_chart(y: np.ndarray, pred: np.ndarray) -> _Chart:
    residual = pred - y
    with chart_figure() as fig:
        ax = fig.subplots()
        ax.hist(residual, bins=50, color=_PALETTE[0], alpha=0.85)
        ax.axvline(0, color="#111827", lw=1)
        ax.set(xlabel="residual (predicted - actual)", ylabel="rows")
        ax.grid(axis="y", alpha=0.3)
        note = f"mean {residual.mean():.4g}, std {residual.std():.4g}"
        return _Chart("Residuals", chart_svg(fig, "residuals"), note)


def score_chart(scores: Any, threshold: float, labels: Any = None, *, names: Sequence[str],
                line: str = "alert line") -> _Chart:
    """A detector's scores in [0, 1] with its ``threshold`` (``line``): one histogram per group of
    ``labels`` (0: ``names[0]``, 1: ``names[1]``, -1 or None: unlabelled), log counts, so a few dozen
    labelled positives still show beside thousands of other rows."""
    s = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    y = np.full(len(s), -1) if labels is None else np.asarray(labels, dtype=int)
    if not len(s):
        return _Chart("Score distribution", None, "no rows were scored")
    bins = np.linspace(0.0, 1.0, 51)
    groups = [("unlabelled", y < 0, "#9ca3af"), (names[0], y == 0, _PALETTE[0]), (names[1], y == 1, _PALETTE[1])]
    with chart_figure() as fig:
        ax = fig.subplots()
        for name, mask, color in groups:
            if mask.any():
                ax.hist(s[mask], bins=bins, color=color, alpha=0.6, label=f"{chart_text(name)} ({int(mask.sum()):,})",
                        histtype="stepfilled", log=True)
        ax.axvline(threshold, color="#111827", lw=1.2, ls="--", label=f"{chart_text(line)} {threshold:.3f}")
        ax.set(xlabel="score", ylabel="rows (log scale)", xlim=(0, 1))
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        above = float(np.mean(s > threshold))
        return _Chart("Score distribution", chart_svg(fig, "scores"), f"{above:.2%} of the rows score above the line")


def class_charts(y_true: Any, output: Any, evaluation: Mapping[str, Any], *, classes: Sequence[Any], kind: str,
                 threshold: float | None = None, exactly: int | None = None, calibration: bool = False) -> list[_Chart]:
    """ROC and precision-recall curves and the confusion matrix of class probabilities (and the
    calibration curve, which a head with one positive class asks for)."""
    y, out, labels = prepare_classes(y_true, output, classes, kind=kind, exactly=exactly)
    thr = check_threshold(threshold)
    cm = (evaluation.get("confusion_matrix") or {}).get("matrix")
    if cm is None:
        cm = skm.confusion_matrix(y, labels_from_proba(out, thr), labels=list(range(len(labels))))
    charts = [_roc_chart(y, out, labels), _pr_chart(y, out, labels), _confusion_chart(np.asarray(cm, dtype=int), labels)]
    if calibration:
        charts.append(_calibration_chart(y, out))
    return charts


def value_charts(y_true: Any, output: Any) -> list[_Chart]:
    """Predicted against actual values, and the residuals."""
    y, pred = prepare_values(y_true, output)
    return [_scatter_chart(y, pred), _residual_chart(y, pred)]


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f3f4f6; --card:#ffffff; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 12px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px;
        margin-bottom: 16px; box-shadow: 0 1px 2px rgba(0,0,0,.04); overflow-x: auto; }
.grid .card { margin-bottom: 0; }
.wide { grid-column: 1 / -1; }
.facts { display: flex; flex-wrap: wrap; gap: 10px 28px; margin: 0; }
.facts div { min-width: 120px; }
.facts dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.facts dd { margin: 0; font-weight: 600; word-break: break-all; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
th { color: var(--muted); font-weight: 600; font-size: 13px; }
td.dir { color: var(--muted); font-size: 12px; }
.chart svg { width: 100%; height: auto; display: block; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.section { margin: 28px 0 12px; font-size: 13px; color: var(--muted); text-transform: uppercase;
           letter-spacing: .06em; }
"""

# Contract figures first, in the order DESIGN.md lists them; anything else the registry adds follows.
_HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "pr_auc", "log_loss",
             "rmse", "mae", "r2")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    value = _json_scalar(value)
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    return shown_number(value)


def _header_html(title: str, task: str, context: Mapping[str, Any] | None) -> str:
    facts = "".join(f"<div><dt>{_e(str(k).replace('_', ' '))}</dt><dd>{_fmt(v) if v is not None else '—'}"
                    f"</dd></div>" for k, v in (context or {}).items())
    block = f'<section class="card"><dl class="facts">{facts}</dl></section>' if facts else ""
    return f'<h1>{_e(title)}</h1>\n<p class="sub">{_e(task)} evaluation</p>\n{block}'


def _metrics_html(evaluation: Mapping[str, Any], threshold: float | None) -> str:
    figures = dict(evaluation.get("metrics") or {})
    order = [m for m in _HEADLINE if m in figures] + [m for m in figures if m not in _HEADLINE]
    rows = "".join(f"<tr><td>{_e(m)}</td><td>{_fmt(figures[m])}</td>"
                   f"<td class=\"dir\">{'lower' if direction(m) == 'minimize' else 'higher'} is better</td>"
                   f"</tr>" for m in order)
    rows_n = evaluation.get("rows")
    sub = [f"{_fmt(rows_n)} rows" if rows_n is not None else ""]
    if threshold is not None:
        sub.append(f"decision threshold {_fmt(float(threshold))}")
    note = f'<p class="note">{_e(", ".join(s for s in sub if s))}</p>' if any(sub) else ""
    return (f'<section class="card"><h2>Metrics</h2><table><thead><tr><th>metric</th><th>value</th>'
            f"<th></th></tr></thead><tbody>{rows}</tbody></table>{note}</section>")


def _per_class_html(evaluation: Mapping[str, Any]) -> str:
    per_class = evaluation.get("per_class")
    if not per_class:
        return ""
    rows = "".join(f"<tr><td>{_e(label)}</td><td>{_fmt(f.get('precision'))}</td><td>{_fmt(f.get('recall'))}"
                   f"</td><td>{_fmt(f.get('f1'))}</td><td>{_fmt(f.get('support'))}</td></tr>"
                   for label, f in per_class.items())
    return (f'<section class="card"><h2>Per class</h2><table><thead><tr><th>class</th><th>precision</th>'
            f"<th>recall</th><th>f1</th><th>support</th></tr></thead><tbody>{rows}</tbody></table>"
            "</section>")


def _chart_html(chart: _Chart) -> str:
    body = f'<div class="chart">{chart.svg}</div>' if chart.svg else ""
    note = f'<p class="note">{_e(chart.note)}</p>' if chart.note else ""
    if chart.svg is None:
        note = f'<p class="note">Not drawn: {_e(chart.note)}.</p>'
    wide = " wide" if chart.wide else ""
    return f'<section class="card{wide}"><h2>{_e(chart.title)}</h2>{body}{note}</section>'


def render_page(evaluation: Mapping[str, Any], *, title: str, kind: str, charts: Sequence[_Chart],
                threshold: float | None = None, importances: Mapping[str, float] | None = None,
                context: Mapping[str, Any] | None = None) -> str:
    """One self-contained HTML page: facts, metrics, per-class table and ``charts`` (the head's, from
    ``class_charts`` or ``value_charts``; the importance chart is added here). The page loads nothing
    from the network: CSS is inline, charts are inline SVG, and there is no script.
    """
    thr = check_threshold(threshold)
    importance = _importance_chart(importances)
    charts = [*charts, *([importance] if importance is not None else [])]
    tables = _metrics_html(evaluation, thr) + _per_class_html(evaluation)
    body = (f'{_header_html(title, kind, context)}\n<div class="grid">{tables}</div>\n'
            f'<h2 class="section">Charts</h2>\n'
            f'<div class="grid">{"".join(_chart_html(c) for c in charts)}</div>')
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="modelloop">\n<title>{_e(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write ``html`` to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A reader sees either the old page or the new one, never half of it. Returns the path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a report is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
