"""The quality report as one self-contained HTML page (inline CSS and hand-built SVG, no scripts).

Order follows what a reader needs first: gate verdict and scores, findings by severity, label
suspects and shift, then one card per column with its histogram or top-value bars.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_html"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6475;font-size:13px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:14px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;min-width:150px}
.score{font-size:30px;font-weight:600}.label{font-size:12px;color:#5b6475;text-transform:uppercase;letter-spacing:.04em}
.bar{height:6px;background:#e8ebf0;border-radius:3px;margin-top:6px}.bar>div{height:6px;border-radius:3px}
.gate{display:inline-block;padding:4px 12px;border-radius:14px;font-weight:600;color:#fff}
.pass{background:#1f8a4c}.fail{background:#c0392b}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #edf0f3;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-size:11px;font-weight:600;color:#fff}
.error{background:#c0392b}.warning{background:#d68910}.info{background:#5b6f8a}
.cols{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.col h3{margin:0 0 2px;font-size:15px;word-break:break-all}.col table{font-size:12px}
.col td{padding:2px 6px}.kv td:first-child{color:#5b6475;width:45%}
.muted{color:#8a93a3}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def _color(score: float) -> str:
    return "#1f8a4c" if score >= 90 else "#d68910" if score >= 70 else "#c0392b"


def _hist_svg(counts: list[int], edges: list[float], width: int = 340, height: int = 90) -> str:
    top = max(counts) or 1
    bw = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bw + 0.5:.1f}" y="{height - 16 - (n / top) * (height - 20):.1f}" width="{bw - 1:.1f}" '
        f'height="{(n / top) * (height - 20):.1f}" fill="#4a78b5"><title>{_fmt(edges[i])} – {_fmt(edges[i + 1])}: '
        f'{n:,}</title></rect>' for i, n in enumerate(counts))
    axis = (f'<text x="0" y="{height - 3}" font-size="10" fill="#5b6475">{_fmt(edges[0])}</text>'
            f'<text x="{width}" y="{height - 3}" font-size="10" fill="#5b6475" text-anchor="end">{_fmt(edges[-1])}</text>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{bars}{axis}</svg>'


def _bars_svg(items: list[tuple[str, float, str]], width: int = 340) -> str:
    """Horizontal bars: (label, share 0..1, text shown at the end)."""
    row = 16
    height = row * len(items) + 2
    parts = []
    for i, (label, share, text) in enumerate(items):
        y = i * row
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text x="0" y="{y + 12}" font-size="11" fill="#1d2330">{escape(short)}</text>'
                     f'<rect x="130" y="{y + 3}" width="{max(share, 0) * 150:.1f}" height="10" fill="#6c8ebf"/>'
                     f'<text x="{136 + max(share, 0) * 150:.1f}" y="{y + 12}" font-size="10" '
                     f'fill="#5b6475">{escape(text)}</text>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'


def _scores(report: dict[str, Any]) -> str:
    cards = []
    for name in ("overall", "completeness", "validity", "consistency"):
        s = float(report["scores"][name])
        cards.append(f'<div class="card"><div class="label">{name}</div><div class="score" '
                     f'style="color:{_color(s)}">{s:.1f}</div><div class="bar"><div style="width:{s:.1f}%;'
                     f'background:{_color(s)}"></div></div></div>')
    gate = report["gate"]
    verdict = ('<span class="gate pass">gate passed</span>' if gate["passed"]
               else f'<span class="gate fail">gate failed ({len(gate["failed"])})</span>')
    failed = "".join(f"<li>{escape(f['message'])}</li>" for f in gate["failed"])
    return (f'<div class="cards">{"".join(cards)}</div><p>{verdict}</p>'
            + (f"<ul>{failed}</ul>" if failed else ""))


def _findings(report: dict[str, Any]) -> str:
    if not report["findings"]:
        return '<p class="muted">No findings.</p>'
    rows = "".join(
        f'<tr><td><span class="sev {escape(f["severity"])}">{escape(f["severity"])}</span></td>'
        f'<td>{escape(f["kind"])}</td><td>{_fmt(f["column"])}</td><td>{_fmt(f["count"])}</td>'
        f'<td>{escape(f["message"])}</td></tr>' for f in report["findings"])
    return f"<table><tr><th>severity</th><th>kind</th><th>column</th><th>count</th><th>message</th></tr>{rows}</table>"


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class(report: dict[str, Any]) -> str:
    """Label suspects per given class: on an imbalanced target the overall share hides that a large part
    of the minority class is flagged (classes that overlap, not wrong labels)."""
    details: dict[str, Any] = next((f["details"] for f in report["findings"] if f["kind"] == "label_issues"), {})
    per_class = details.get("per_class")
    if not per_class:
        return ""
    overlapping = details.get("overlapping_classes") or []
    rows = [{**c, "overlap": c["label"] in overlapping} for c in per_class]
    return ("<h2>Label suspects per class</h2>"
            + _table(rows, ["label", "rows", "suspects", "share", "suggested", "overlap"]))


def _extras(report: dict[str, Any]) -> str:
    out = [_per_class(report)]
    if report.get("label_issues"):
        keys = ["row", "row_id", "given_label", "suggested_label", "confidence", "given_label_prob"]
        keys = [k for k in keys if any(k in s for s in report["label_issues"])]
        out.append(f"<h2>Label suspects (top {len(report['label_issues'])})</h2>"
                   + _table(report["label_issues"], keys))
    if report.get("shift"):
        rows = [{"column": c, **r} for c, r in sorted(report["shift"].items(), key=lambda kv: -kv[1]["psi"])]
        out.append("<h2>Shift against the reference</h2>"
                   + _table(rows, ["column", "method", "psi", "ks", "effect", "p_value", "drifted"]))
    if report.get("leakage"):
        rows = [{"column": c, **r} for c, r in sorted(report["leakage"].items(), key=lambda kv: -kv[1]["score"])]
        out.append("<h2>Single-feature predictive power (leakage check)</h2>"
                   + _table(rows[:15], ["column", "metric", "score"]))
    if report.get("correlations"):
        out.append("<h2>Correlated pairs</h2>" + _table(report["correlations"], ["a", "b", "r"]))
    return "".join(out)


def _column_card(name: str, f: dict[str, Any]) -> str:
    kv = [("kind", f.get("kind") or "—"), ("inferred", f.get("inferred_kind")), ("dtype", f.get("dtype")),
          ("missing", f"{f['missing']:,} ({f['missing_share']:.1%})"), ("distinct", f.get("distinct"))]
    for k in ("min", "max", "mean", "std"):
        if k in f:
            kv.append((k, f[k]))
    q = f.get("quantiles") or {}
    if q:
        kv.append(("p05 / p50 / p95", " / ".join(_fmt(q.get(k)) for k in ("p05", "p50", "p95"))))
    if f.get("outliers", {}).get("count"):
        kv.append(("outliers", f"{f['outliers']['count']:,} ({f['outliers']['share']:.2%})"))
    if "len_mean" in f:
        kv.append(("length min / mean / max", " / ".join(_fmt(f.get(k)) for k in ("len_min", "len_mean", "len_max"))))
    p = f.get("patterns") or {}
    shown = [f"{k} {v:.0%}" for k, v in p.items() if k != "words_mean" and v >= 0.01]
    if shown:
        kv.append(("patterns", ", ".join(shown)))
    if f.get("shapes"):
        kv.append(("shapes", ", ".join(f"{s['shape']} {s['share']:.0%}" for s in f["shapes"][:3])))
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v if isinstance(v, str) and k in ('missing',) else _fmt(v)}</td></tr>"
                   for k, v in kv)
    chart = ""
    if f.get("histogram"):
        chart = _hist_svg(f["histogram"]["counts"], f["histogram"]["edges"])
    elif f.get("top"):
        chart = _bars_svg([(str(t["value"]), float(t["share"]), f"{t['share']:.1%}") for t in f["top"][:8]])
    return f'<div class="card col"><h3>{escape(name)}</h3><table class="kv">{rows}</table>{chart}</div>'


def render_html(report: dict[str, Any], title: str) -> str:
    """The page for ``QualityReport.to_dict()`` output."""
    sampled = report.get("sampled") or {}
    sub = (f"{report['rows']:,} rows × {report['columns_count']} columns · exact duplicates: "
           f"{report.get('duplicates', {}).get('rows', 0):,}")
    if sampled.get("rows") and sampled.get("rows") < sampled.get("of", 0):
        sub += f" · leakage/correlations on {sampled['rows']:,} sampled rows"
    if sampled.get("label_issues_rows"):
        sub += f" · label issues on {sampled['label_issues_rows']:,} rows"
    shift_rows = sampled.get("shift") or {}  # {side: {rows, of}}: the shift's sample per side
    if any(s["rows"] < s["of"] for s in shift_rows.values()):
        counts = " + ".join(f"{s['rows']:,}" for s in shift_rows.values())
        sub += f" · {'/'.join(shift_rows)} shift on {counts} sampled rows"
    cards = "".join(_column_card(c, f) for c, f in report["columns"].items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><main><h1>{escape(title)}</h1><div class="sub">{escape(sub)}</div>'
            f'{_scores(report)}<h2>Findings ({len(report["findings"])})</h2>{_findings(report)}{_extras(report)}'
            f'<h2>Columns</h2><div class="cols">{cards}</div></main></body></html>')
