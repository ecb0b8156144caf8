"""The evaluation page of a generative model: perplexity of the base and the fine-tuned model, the task
scores, and sample prompts with the reference, the base answer and the fine-tuned answer side by side.
Every text shown comes from data or a model, so every text is escaped."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["render_generation_report", "write_html"]

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
          "width:100%}td,th{border:1px solid #ccc;padding:.4em;vertical-align:top;text-align:left;"
          "white-space:pre-wrap}th{background:#f4f4f4}.num{text-align:right}")


def _cell(value: Any) -> str:
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def render_generation_report(evaluation: dict[str, Any], *, title: str, context: dict[str, Any]) -> str:
    """One self-contained HTML page."""
    m = {**(evaluation.get("metrics") or {}), "perplexity": evaluation.get("perplexity")}
    base = {**(evaluation.get("base_metrics") or {}), "perplexity": evaluation.get("base_perplexity")}
    names = sorted(set(m) | set(base))
    rows = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(base.get(k))}{_cell(m.get(k))}</tr>" for k in names)
    samples = "".join(
        "<tr>" + "".join(_cell(s.get(k)) for k in ("prompt", "reference", "base", "fine_tuned")) + "</tr>"
        for s in evaluation.get("samples") or [])
    facts = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in context.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>{facts}</ul>"
            f"<h2>Scores on the test split</h2><table><tr><th>metric</th><th>base model</th>"
            f"<th>fine-tuned</th></tr>{rows}</table>"
            f"<h2>Sample answers</h2><table><tr><th>prompt</th><th>reference</th><th>base model</th>"
            f"<th>fine-tuned</th></tr>{samples}</table></body></html>")


def write_html(path: Path, text: str) -> Path:
    """Write + rename: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
