"""The text normalization of the ``normalize_text`` clean rule, as one Polars expression.

It lives apart from the clean rules so that the profile can group a column's values by exactly what
the rule would make of them (``_variants``) without importing the cleaning machinery. ``step`` is the
rule's recorded settings (``unicode``, ``width``, ``traditional_to_simplified``, ``collapse_whitespace``,
``strip``, ``case``, ``empty_as_null``), applied in that order.
"""

from __future__ import annotations

from typing import Any, Mapping

import polars as pl

__all__ = ["FULL_WIDTH", "normalize_expr"]

FULL_WIDTH = [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000"]   # full-width ASCII forms, ideographic space
_HALF = [chr(c) for c in range(0x21, 0x7F)] + [" "]


def _simplified(text: str | None) -> str | None:
    from .text_chinese import to_simplified

    return to_simplified(text)


def normalize_expr(x: pl.Expr, step: Mapping[str, Any]) -> pl.Expr:
    """``x`` (a String expression) normalized as ``step`` says."""
    if step.get("unicode"):
        x = x.str.normalize(step["unicode"])
    if step.get("width") == "half":
        x = x.str.replace_many(FULL_WIDTH, _HALF)
    elif step.get("width") == "full":
        x = x.str.replace_many(_HALF, FULL_WIDTH)
    if step.get("traditional_to_simplified"):
        x = x.map_elements(_simplified, return_dtype=pl.String, skip_nulls=True)
    if step.get("collapse_whitespace"):
        x = x.str.replace_all(r"\s+", " ")
    if step.get("strip"):
        x = x.str.strip_chars()
    if step.get("case") == "lower":
        x = x.str.to_lowercase()
    elif step.get("case") == "upper":
        x = x.str.to_uppercase()
    if step.get("empty_as_null"):
        x = pl.when(x == "").then(None).otherwise(x)
    return x
