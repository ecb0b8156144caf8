"""The monitor report: one self-contained HTML page (no CDN), alerts first, then drift and metrics."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_monitor"]

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b}.card{border:1px solid #e3e3e3;
border-radius:8px;padding:1rem;margin-bottom:1rem}"""


def _e(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("—" if v is None else str(v))


_DRIFT_KEYS = {"features", "prediction", "label", "time_columns"}
_SECTION_TITLES = {"recommendations": "Served recommendations", "embedding": "Image embeddings"}


def _flat(v: Any) -> Any:
    """A section's value in one cell: numbers as numbers, a small mapping as ``key: value`` pairs."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_e(x) if isinstance(x, float) else x}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return v


def _psi_chart(features: dict[str, Any]) -> str:
    if not features:
        return ""
    from ..evaluation.charts import chart_figure, chart_svg, chart_text

    items = sorted(features.items(), key=lambda kv: kv[1]["psi"])[-25:]
    with chart_figure(7, 0.3 * len(items) + 1) as fig:
        ax = fig.add_subplot()
        ax.barh(range(len(items)), [v["psi"] for _, v in items],
                color=["#b00020" if v["drifted"] else "#4c78a8" for _, v in items])
        ax.set_yticks(range(len(items)), [chart_text(k, 40) for k, _ in items])  # two names cut alike: two bars
        thr = next(iter(features.values()))["threshold"]
        ax.axvline(thr, color="#444", ls="--", lw=1)
        ax.set_xlabel("PSI (training data vs recent traffic)")
        return chart_svg(fig, "psi")


def render_monitor(r: dict[str, Any]) -> str:
    m = r["model"]
    parts = [f"<h1>Monitor — {_e(m['name'])} v{_e(m['version'])}</h1>",
             f"<p>{_e(r['window']['predictions'])} recent predictions ({_e(r['window']['from'])} → "
             f"{_e(r['window']['to'])}), {_e(r['window']['labeled'])} labeled.</p>"]
    for c, t in (r["window"].get("time_columns") or {}).items():  # where the window lies in time: not drift
        parts.append(f"<p>{_e(c)}: this window {_e(t['from'])} → {_e(t['to'])}, training rows "
                     f"{_e(t['training_from'])} → {_e(t['training_to'])}; compared by "
                     f"{_e(', '.join(t['compared']) or 'nothing (training spans under a day)')}.</p>")
    alerts = r["alerts"]
    parts.append("<div class='card'><h2>Alerts</h2>" + (
        "<ul>" + "".join(f"<li class='bad'>{_e(a['message'])}</li>" for a in alerts) + "</ul>"
        if alerts else "<p class='ok'>No alert.</p>") + "</div>")
    feats = r["drift"]["features"]
    rows = "".join(f"<tr><td>{_e(c)}</td><td>{_e(d['method'])}</td><td>{_e(d['psi'])}</td><td>{_e(d['ks'])}</td>"
                   f"<td>{_e(d['p_value'])}</td><td class='{'bad' if d['drifted'] else 'ok'}'>"
                   f"{'drifted' if d['drifted'] else 'stable'}</td></tr>"
                   for c, d in sorted(feats.items(), key=lambda kv: -kv[1]["psi"]))
    parts.append("<div class='card'><h2>Feature drift</h2>" + _psi_chart(feats) +
                 "<table><tr><th>feature</th><th>method</th><th>PSI</th><th>KS</th><th>p-value</th>"
                 f"<th>verdict</th></tr>{rows}</table></div>")
    for part in ("prediction", "label"):
        d = r["drift"].get(part)
        if d:
            parts.append(f"<p>{part} drift: PSI {_e(d['psi'])}, p-value {_e(d['p_value'])} — "
                         f"{'drifted' if d['drifted'] else 'stable'}</p>")
    mrows = "".join(f"<tr><td>{_e(v)}</td><td>{_e(w)}</td><td>{_e(f.get('n'))}</td>" +
                    "".join(f"<td>{_e(f.get(k))}</td>" for k in ("accuracy", "f1_macro", "roc_auc", "mae", "rmse")) +
                    "</tr>" for v, per in r["metrics"].items() for w, f in per.items())
    parts.append("<div class='card'><h2>Live metrics (labeled predictions)</h2><table><tr><th>version</th>"
                 "<th>window</th><th>n</th><th>accuracy</th><th>f1_macro</th><th>roc_auc</th><th>mae</th>"
                 f"<th>rmse</th></tr>{mrows}</table></div>")
    for name, section in r["drift"].items():  # a family's own sections (recommendations: click-through, coverage)
        if name in _DRIFT_KEYS or not isinstance(section, dict):
            continue
        frows = "".join(f"<tr><td>{_e(k.replace('_', ' '))}</td><td>{_e(_flat(v))}</td></tr>"
                        for k, v in section.items())
        parts.append(f"<div class='card'><h2>{_e(_SECTION_TITLES.get(name, name.replace('_', ' ').capitalize()))}"
                     f"</h2><table>{frows}</table></div>")
    serving = r.get("serving")  # a family's figures of its served answers (generative: tokens/s, TTFT, ...)
    if serving:
        srows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in serving.items())
        parts.append(f"<div class='card'><h2>Served answers</h2><table>{srows}</table></div>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>monitor {_e(m['name'])}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
