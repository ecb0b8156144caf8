"""The anomaly model's evaluation page, on the standard evaluation page (same look, inline SVG charts, no
script): its judged figures, the alert counts, the score distribution by verdict with the alert line, ROC
and precision-recall curves and the confusion at the alert line where the rows hold both verdicts, how the
detector and the line were chosen, and the top anomalies with their reasons."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TOP_ROWS", "anomaly_report_html"]

TOP_ROWS = 20
_JUDGED = ("roc_auc", "pr_auc", "precision_at_budget", "recall")  # the figures with a better direction
_COUNTS = ("alerts_per_1000", "alerts_per_day")


def _thumbnail(image: str) -> str:
    """An image row's thumbnail (the image family's, ``anomaly.backbone``), or none when it does not decode."""
    from ..image.report import thumbnail_src

    try:
        return thumbnail_src(image)
    except Exception:  # a row whose bytes do not decode is still listed, without its picture
        return ""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _budget_words(budget: Mapping[str, Any], threshold: float) -> str:
    if budget.get("alerts_per_1000") is not None:
        said = f"alert_budget {budget['alerts_per_1000']:g} per 1,000 records"
    elif budget.get("alert_budget") is not None:
        said = f"alert_budget {budget['alert_budget']}"
    else:
        said = f"contamination {budget.get('contamination', 1.0 - threshold):g}"
    rate = (f" at {budget['records_per_day']:g} records a day (the dataset version's)"
            if budget.get("records_per_day") else "")
    return f"{said}{rate}: score above {threshold:.4f} ({1.0 - threshold:.2%} of the training rows)"


def anomaly_report_html(df: pd.DataFrame, scores: np.ndarray, answers: list[dict[str, Any]], evaluation: Mapping[str, Any],
                        *, threshold: float, title: str, context: Mapping[str, Any], selection: Mapping[str, Any],
                        labels: np.ndarray | None = None, names: Sequence[str] = ("normal", "anomaly")) -> str:
    """The page, on the standard evaluation page (:func:`...evaluation.report.render_page`): ``scores`` are
    the head's ``(n, 1 + C)``, ``answers`` the served answers of the rows, ``labels`` 1 / 0 / -1 (anomaly,
    normal, unlabelled) per row or None. The judged figures go in the metrics table; the alert counts,
    which are neither better high nor low, among the facts."""
    from ...evaluation.report import class_charts, render_page, score_chart

    s = scores[:, 0] if len(scores) else np.zeros(0)
    figures = dict(evaluation.get("metrics") or {})
    judged = {k: figures[k] for k in _JUDGED if figures.get(k) is not None}
    flagged = float(np.mean(s > threshold)) if len(s) else 0.0
    y = np.full(len(s), -1) if labels is None else np.asarray(labels)
    facts = {**context, "rows scored": len(s), "flagged": f"{flagged:.2%}",
             **{k.replace("_", " "): figures[k] for k in _COUNTS if figures.get(k) is not None},
             "labelled": int((y >= 0).sum()), "labelled anomalies": int((y == 1).sum())}
    charts = [score_chart(s, threshold, y, names=names)]
    known = y >= 0
    if len(np.unique(y[known])) == 2:  # both verdicts among the rows: the usual curves, at the alert line
        proba = np.c_[1.0 - s[known], s[known]]
        charts += class_charts(y[known], proba, {}, classes=list(names), kind="anomaly", threshold=threshold)[:3]
    page = render_page({"metrics": judged, "rows": int(known.sum())}, title=title, kind="anomaly detection",
                       charts=charts, context=facts)
    return page.replace("\n</main>", f'\n<div class="grid">{_about(selection, threshold)}\n{_top_table(df, s, answers)}</div>\n</main>', 1)


def _about(selection: Mapping[str, Any], threshold: float) -> str:
    return (f'<section class="card wide"><h2>How the detector and its alert line were chosen</h2>'
            f'<p>selection: {html.escape(str(selection.get("why", "")))}</p>'
            f'<p>alert line: {html.escape(_budget_words(selection.get("budget") or {}, threshold))}</p></section>')


def _top_table(df: pd.DataFrame, s: np.ndarray, answers: list[dict[str, Any]]) -> str:
    """The ``TOP_ROWS`` highest-scoring rows with their reasons (and thumbnails for image rows)."""
    order = np.argsort(-s, kind="stable")[:TOP_ROWS]
    images = "image" in df.columns and df["image"].map(lambda v: isinstance(v, str) and len(v) > 64).all()
    top = []
    for i in order.tolist():
        reasons = "; ".join(f"{html.escape(str(r['feature']))} = {html.escape(json.dumps(r['value'], default=str))} "
                            f"({r['contribution']:.2f})" for r in answers[i]["reasons"]) or "-"
        seen = f'<td><img src="{_thumbnail(df["image"].iloc[i])}" alt="row {i}" width="96"></td>' if images else ""
        top.append(f"<tr><td>{i}</td>{seen}<td>{s[i]:.4f}</td><td>{'yes' if answers[i]['is_anomaly'] else 'no'}</td>"
                   f'<td class="text">{reasons}</td></tr>')
    return (f'<section class="card wide"><h2>Top {len(order)} anomalies and their reasons</h2><table><thead><tr>'
            f"<th>row</th>{'<th>image</th>' if images else ''}<th>score</th><th>flagged</th>"
            '<th class="text">reasons: feature = value (share of deviation)</th></tr></thead>'
            f"<tbody>{''.join(top)}</tbody>"
            f"</table></section>")
