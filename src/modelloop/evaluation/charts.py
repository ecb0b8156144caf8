"""Charts as inline SVG for the HTML pages (the evaluation report, the monitor report): one way to draw
them, without pyplot's global state (the dashboard renders pages in threads).

Text stays text in the SVG (``svg.fonttype: none``), so the browser draws a Chinese or Japanese label with
its own fonts. Matplotlib's font, DejaVu Sans, has no CJK glyphs: drawn as paths, a feature named 评论
came out as empty boxes on the monitor's drift chart, and every missing glyph printed a warning on the
terminal ("Glyph 27491 missing from font(s) DejaVu Sans") although the page shows the text. Matplotlib
only measures the text with that font (a CJK label is given a slightly wrong width), so the warning is
silenced while a chart is drawn.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["chart_figure", "chart_svg", "chart_text"]

@contextlib.contextmanager
def chart_figure(width: float = 6.0, height: float = 4.2) -> Iterator[Any]:
    """A pyplot-free figure on an Agg canvas, laid out when drawn, cleared on exit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    try:
        yield fig
    finally:
        fig.clear()


def chart_svg(fig: Any, key: str) -> str:
    """The figure as an inline ``<svg>`` element: no XML prolog, text kept as text, stable ids."""
    import matplotlib as mpl

    buf = io.StringIO()
    # A per-chart hash salt keeps element ids deterministic yet distinct between charts on the page.
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"modelloop-{key}",
                         "svg.id": f"chart-{key}"}), warnings.catch_warnings():
        # the browser draws the text; matplotlib's font only measures it (the layout runs in savefig)
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        # No RDF metadata block: no date (stable output) and nothing that points off the page.
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    return text[text.index("<svg"):].strip()


def chart_text(value: Any, width: int = 28) -> str:
    """A label safe for matplotlib: shortened, and ``$`` escaped so it is never read as mathtext."""
    s = str(value)
    if len(s) > width:
        s = s[: width - 1] + "…"
    return s.replace("$", r"\$")
