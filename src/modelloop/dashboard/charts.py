"""Charts as inline SVG written on the server: no script, no CDN, nothing the page's CSP must allow.

The issue asked for a charting library vendored in the package; a few SVG primitives cover the four
charts the pages draw (lines over time, bars, a heat map, the lineage graph) without shipping and
auditing one, and keep ``script-src 'self'`` with no script at all. Every text that reaches a chart
(feature names, versions, labels) goes through :func:`markupsafe.escape`; hovering a point or a cell
shows its figure through an SVG ``<title>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["PALETTE", "bar_chart", "heat_colour", "heat_map", "line_chart", "svg_text"]

PALETTE = ("#2f6fd6", "#d2453c", "#2e9d5b", "#b26bd6", "#e0952b", "#5f6b7d")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def svg_text(x: float, y: float, text: object, anchor: str = "start", extra: str = "", fill: str = "#3a4252") -> str:
    """One escaped label."""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {_FONT} fill="{fill}"{extra}>'
            f'{escape(str(text))}</text>')


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _frame(width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
                  + "".join(body) + "</svg>")


def line_chart(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str = "",
               unit: str = "", width: int = 560, height: int = 170) -> Markup:
    """Lines over shared x ``labels`` (time buckets); a ``None`` breaks its line. The y axis starts at 0."""
    left, right, top, bottom = 66, 10, 18, 34
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    top_value = max(values, default=0.0) or 1.0
    n = max(len(labels), 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * (i + 0.5) / n)
        return x, top + plot_h * (1 - v / top_value)

    body = [svg_text(left, 12, title, extra=' font-weight="bold"'),
            f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#b8bfcc"/>',
            f'<line x1="{left}" y1="{top}" x2="{width - right}" y2="{top}" stroke="#eef0f3"/>',
            svg_text(left - 4, top + 4, f"{_fmt(top_value)}{unit}", "end"),
            svg_text(left - 4, top + plot_h + 4, f"0{unit}", "end")]
    for i in sorted({0, n // 2, n - 1}) if labels else []:
        body.append(svg_text(xy(i, 0)[0], height - 18, labels[i], "middle"))
    for k, (name, vs) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                runs.append([])
                continue
            x, y = xy(i, v)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{colour}"><title>'
                        f'{escape(name)} {escape(labels[i])}: {_fmt(v)}{escape(unit)}</title></circle>')
        body += [f'<polyline points="{" ".join(r)}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
                 for r in runs if len(r) > 1]
        body.append(f'<rect x="{left + 90 * k}" y="{height - 10}" width="9" height="9" fill="{colour}"/>')
        body.append(svg_text(left + 90 * k + 12, height - 2, name))
    return _frame(width, height, title, body)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str = "", width: int = 560,
              height: int = 150, colours: Sequence[str] | None = None) -> Markup:
    """One bar per label (a histogram's buckets, errors by kind), the figure above each bar."""
    left, right, top, bottom = 10, 10, 30, 20
    n = max(len(labels), 1)
    top_value = max(values, default=0.0) or 1.0
    slot = (width - left - right) / n
    plot_h = height - top - bottom
    body = [svg_text(left, 12, title, extra=' font-weight="bold"'),
            f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#b8bfcc"/>']
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * v / top_value
        x = left + slot * i + slot * 0.15
        colour = (colours or PALETTE)[i % len(colours or PALETTE)] if colours else PALETTE[0]
        body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(label)}: {_fmt(v)}</title></rect>')
        body.append(svg_text(x + slot * 0.35, top + plot_h - h - 3, _fmt(v), "middle"))
        body.append(svg_text(x + slot * 0.35, height - 6, label, "middle"))
    return _frame(width, height, title, body)


def heat_colour(score: float | None, threshold: float, drifted: bool) -> str:
    """Grey for no figure, green to amber below the threshold, red once a test fired."""
    if score is None:
        return "#e2e5ea"
    if drifted:
        return "#d2453c"
    share = max(0.0, min(1.0, score / threshold)) if threshold > 0 else 0.0
    g = int(0x9d + (0xc0 - 0x9d) * share)
    r = int(0x2e + (0xe0 - 0x2e) * share)
    return f"#{r:02x}{g:02x}5b"


def heat_map(rows: Sequence[str], cols: Sequence[str], cells: dict[tuple[str, str], dict], *,
             title: str = "", cell_w: int = 54, cell_h: int = 20) -> Markup:
    """Rows by columns (features by day); a cell is ``{"score", "threshold", "drifted", "text"}`` or missing
    (grey: no figure that day). The cell's ``text`` is its hover title; a fired cell is marked with ``!``."""
    left = 12 + 7 * max((len(r) for r in rows), default=4)
    left = min(left, 220)
    top = 34
    width, height = left + cell_w * max(len(cols), 1) + 10, top + cell_h * len(rows) + 6
    body = [svg_text(0, 12, title, extra=' font-weight="bold"')]
    for j, col in enumerate(cols):
        body.append(svg_text(left + cell_w * j + cell_w / 2, top - 6, col, "middle"))
    for i, row in enumerate(rows):
        y = top + cell_h * i
        body.append(svg_text(left - 6, y + cell_h * 0.7, row if len(row) < 32 else row[:30] + "…", "end"))
        for j, col in enumerate(cols):
            cell = cells.get((row, col))
            colour = heat_colour((cell or {}).get("score"), (cell or {}).get("threshold") or 0.0,
                                 bool(cell and cell.get("drifted")))
            x = left + cell_w * j
            tip = escape(f"{row} · {col}: {(cell or {}).get('text', '—')}")
            css = ' class="fired"' if cell and cell.get("drifted") else ""
            body.append(f'<rect{css} x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="{colour}"><title>{tip}</title></rect>')
            if cell and cell.get("score") is not None:
                mark = "!" if cell.get("drifted") else ""
                body.append(svg_text(x + cell_w / 2, y + cell_h * 0.7, f"{_fmt(cell['score'])}{mark}", "middle",
                                     fill="#fff" if cell.get("drifted") else "#1d2330"))
    return _frame(width, height, title, body)
