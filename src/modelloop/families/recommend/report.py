"""The recommender's evaluation page: its figures at ``k``, NDCG@k per user-activity bucket (cold, medium,
heavy users, by their training interactions) as a bar chart, and the most popular items. Static HTML with
an inline SVG, no script; every name is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["bucket_svg", "recommend_report_html"]


def bucket_svg(buckets: Mapping[str, Mapping[str, Any]], width: int = 480, height: int = 200) -> str:
    """One bar per activity bucket: its users' mean NDCG@k (the user count under it)."""
    pad, names = 30, list(buckets)
    bw = (width - 2 * pad) / max(len(names), 1)
    bars = []
    for n, name in enumerate(names):
        value = buckets[name].get("ndcg") or 0.0
        h = (height - 2 * pad) * min(float(value), 1.0)
        x = pad + n * bw
        bars.append(f'<rect x="{x + 8:.1f}" y="{height - pad - h:.1f}" width="{bw - 16:.1f}" height="{h:.1f}" '
                    f'fill="#4a78b5"><title>{html.escape(name)}: {value:.4f}</title></rect>'
                    f'<text x="{x + 8:.1f}" y="{height - 10}" font-size="11">{html.escape(name)} '
                    f'({int(buckets[name].get("users") or 0)} users)</text>'
                    f'<text x="{x + 8:.1f}" y="{height - pad - h - 4:.1f}" font-size="11">{value:.3f}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="NDCG per activity bucket">{"".join(bars)}'
            f'<line x1="{pad}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" stroke="#333"/></svg>')


def recommend_report_html(model: Any, evaluation: Mapping[str, Any], *, title: str, context: Mapping[str, Any]) -> str:
    k = evaluation.get("k", model.k_)
    rows = "".join(f"<tr><th>{html.escape(name)}{'@' + str(k) if name in ('precision', 'recall', 'ndcg', 'map', 'hit_rate') else ''}"
                   f"</th><td>{'n/a' if v is None else f'{v:.4f}'}</td></tr>"
                   for name, v in (evaluation.get("metrics") or {}).items())
    about = "".join(f"<li>{html.escape(str(key))}: {html.escape(str(v))}</li>" for key, v in context.items())
    popular = np.argsort(-model.counts_, kind="stable")[:10]
    top = "".join(f"<tr><td>{html.escape(str(model.items_[p]))}</td><td>{int(model.counts_[p])}</td></tr>"
                  for p in popular.tolist())
    chosen = model.selection_
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{about}
<li>recommender: {html.escape(str(model.name_))} {html.escape(str(model.params_))}</li>
<li>feedback: {'explicit ratings' if model.explicit_ else 'implicit interactions'}; {len(model.users_)} users,
{len(model.items_)} items</li><li>test: {evaluation.get('rows')} interactions of {evaluation.get('users')} users
({evaluation.get('cold_users')} unseen in training: ranked by popularity); training items excluded</li>
<li>selection: {html.escape(str(chosen.get('why', '')))}</li></ul>
<h2>Figures at k = {k}</h2><table>{rows}</table>
<h2>NDCG@{k} by user activity</h2>{bucket_svg(evaluation.get('buckets') or {})}
<h2>Most popular items (the fallback for unseen users)</h2>
<table><tr><th>item</th><th>training users</th></tr>{top}</table></body></html>"""
