"""The anomaly model's evaluation page: its figures, the score distribution with the threshold, and the
top anomalies of the evaluated rows with their reasons. Static HTML with an inline SVG, no script."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TOP_ROWS", "anomaly_report_html", "histogram_svg"]

TOP_ROWS = 20
_BINS = 40


def histogram_svg(scores: np.ndarray, threshold: float, width: int = 640, height: int = 220) -> str:
    """Counts of scores in ``_BINS`` bins over [0, 1] (log-height bars) with the threshold as a red line."""
    counts, _ = np.histogram(np.clip(scores, 0, 1), bins=_BINS, range=(0.0, 1.0))
    top = float(np.log1p(counts.max())) or 1.0
    pad, bw = 30, (width - 40) / _BINS
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = (height - 2 * pad) * float(np.log1p(c)) / top
        colour = "#c0392b" if (i + 0.5) / _BINS > threshold else "#4a78b5"
        bars.append(f'<rect x="{pad + i * bw:.1f}" y="{height - pad - h:.1f}" width="{bw - 1:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"><title>{i / _BINS:.3f}-{(i + 1) / _BINS:.3f}: {c}</title></rect>')
    x = pad + threshold * (width - 40)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="score distribution">{"".join(bars)}'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad - 10}" y2="{height - pad}" stroke="#c0392b" stroke-width="2"/>'
            f'<text x="{x + 4:.1f}" y="{pad - 12}" font-size="11">threshold {threshold:.3f}</text>'
            f'<line x1="{pad}" x2="{width - 10}" y1="{height - pad}" y2="{height - pad}" stroke="#333"/>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">0</text>'
            f'<text x="{width - 20}" y="{height - 8}" font-size="11">1</text>'
            f'<text x="{width / 2 - 60:.0f}" y="{height - 8}" font-size="11">score (log count)</text></svg>')


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
                        *, threshold: float, title: str, context: Mapping[str, Any], selection: Mapping[str, Any]) -> str:
    """The page: ``scores`` are the head's ``(n, 1 + C)``, ``answers`` the served answers of the rows."""
    s = scores[:, 0] if len(scores) else np.zeros(0)
    metrics = dict(evaluation.get("metrics") or {})
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v) if v is not None else 'n/a'}</td></tr>"
                   for k, v in metrics.items()) or "<tr><td>no labelled rows: no figures</td></tr>"
    order = np.argsort(-s, kind="stable")[:TOP_ROWS]
    images = "image" in df.columns and df["image"].map(lambda v: isinstance(v, str) and len(v) > 64).all()
    top = []
    for i in order.tolist():
        reasons = "; ".join(f"{html.escape(str(r['feature']))} = {html.escape(json.dumps(r['value'], default=str))} "
                            f"({r['contribution']:.2f})" for r in answers[i]["reasons"]) or "-"
        seen = f'<td><img src="{_thumbnail(df["image"].iloc[i])}" alt="row {i}" width="96"></td>' if images else ""
        top.append(f"<tr><td>{i}</td>{seen}<td>{s[i]:.4f}</td><td>{'yes' if answers[i]['is_anomaly'] else 'no'}</td>"
                   f"<td>{reasons}</td></tr>")
    about = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in context.items())
    flagged = float(np.mean(s > threshold)) if len(s) else 0.0
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{about}<li>rows scored: {len(s)}, flagged: {flagged:.2%}</li>
<li>selection: {html.escape(str(selection.get('why', '')))}</li>
<li>alert line: {html.escape(_budget_words(selection.get('budget') or {}, threshold))}</li></ul>
<h2>Figures on labelled rows</h2><table>{rows}</table>
<h2>Score distribution and threshold</h2>{histogram_svg(s, threshold)}
<h2>Top {len(order)} anomalies and their reasons</h2>
<table><tr><th>row</th>{'<th>image</th>' if images else ''}<th>score</th><th>flagged</th><th>reasons (feature = value (share of deviation))</th></tr>
{''.join(top)}</table></body></html>"""
