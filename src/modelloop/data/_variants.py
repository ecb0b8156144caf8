"""Spelling variants: distinct values of a column that the ``normalize_text`` clean rule makes equal.

Exported tables often hold one category written several ways: ``'yes'`` and ``' yes '``, ``'Yes'`` and
``'YES'``, full-width ``'ＡＢＣ'`` and ``'ABC'``, traditional ``'東京'`` and simplified ``'东京'``. A model
sees each spelling as its own category (on a target: its own class). ``variant_groups`` groups a
column's distinct values by what the rule would make of them (NFKC, whitespace collapsed and
stripped, lower case, traditional folded to simplified when OpenCC is installed), so it costs a few
string expressions over the distinct values, never a pass over the rows. For each group it says which
of the rule's settings the merge needs, so the suggested rule is one that does merge them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ..errors import ConfigError
from ._text_norm import FULL_WIDTH, normalize_expr

__all__ = ["GROUPS_KEPT", "variant_groups"]

GROUPS_KEPT = 10  # groups listed in the finding's details (all are counted)
T2S_MAX_DISTINCT = 5_000  # Han values folded traditional -> simplified (OpenCC runs in Python, ~30 µs a value)

# The settings that tell spellings apart, each with the key made without it: a setting a group needs is
# one without which the group's values no longer all meet.
_FULL: dict[str, Any] = {"unicode": "NFKC", "collapse_whitespace": True, "strip": True, "case": "lower"}
_WITHOUT: dict[str, dict[str, Any]] = {
    "unicode": {"unicode": None}, "collapse_whitespace": {"collapse_whitespace": False},
    "strip": {"strip": False}, "case": {"case": "none"}}
_WIDE = frozenset(FULL_WIDTH)
# what a user calls each difference, in the message
REASONS = {"strip": "spaces", "collapse_whitespace": "spaces", "case": "letter case", "width": "character width",
           "unicode": "Unicode form", "traditional_to_simplified": "traditional/simplified characters"}


def _simplified_map(values: pl.Series) -> dict[str, str] | None:
    """Traditional -> simplified for the values holding Han characters (None: none, too many, or no OpenCC)."""
    han = values.filter(values.str.contains(r"\p{Han}").fill_null(False)).unique()
    if han.len() == 0 or han.len() > T2S_MAX_DISTINCT:
        return None
    from .text_chinese import to_simplified

    try:
        return {v: str(to_simplified(v)) for v in han.to_list()}
    except ConfigError:  # opencc-python-reimplemented is not installed: the rule could not fold either
        return None


def _grouped(vc: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """The rows of ``vc`` whose full key ``k`` other values share, with one key per setting left out
    (``k:<setting>``), and whether traditional characters were folded. The per-setting keys are made
    only for those rows: on a column without variants the cost is one normalization of its values."""
    keyed = vc.with_columns(normalize_expr(pl.col("v"), _FULL).alias("k")).filter(pl.col("k") != "")
    t2s = _simplified_map(keyed.get_column("k"))
    if t2s:
        keyed = keyed.with_columns(pl.col("k").alias("k:traditional_to_simplified"), pl.col("k").replace(t2s))
    multi = keyed.filter(pl.col("v").n_unique().over("k") > 1)
    if multi.height == 0:
        return multi, bool(t2s)
    multi = multi.with_columns(normalize_expr(pl.col("v"), {**_FULL, **off}).alias(f"k:{name}")
                               for name, off in _WITHOUT.items())
    if t2s:
        wanted = [f"k:{name}" for name in _WITHOUT]
        more = _simplified_map(pl.concat([multi.get_column(k) for k in wanted])) or {}
        multi = multi.with_columns(pl.col(k).replace(more) for k in wanted)
    return multi, bool(t2s)


def variant_groups(vc: pl.DataFrame) -> dict[str, Any] | None:
    """Groups of ``vc``'s values (``v``: distinct non-missing text, ``n``: rows) that the rule makes one.

    None when there is no such group. Otherwise ``groups`` (the ``GROUPS_KEPT`` with the most rows to
    merge, each ``{value, count, variants: [{value, count}], differs_by, merged}``: ``value`` the most
    common spelling, ``merged`` what the rule turns the group into), ``groups_total``, ``rows`` (rows
    whose value the merge changes to another spelling's) and ``settings``: the rule's settings the merges
    need (``strip``, ``collapse_whitespace``, ``unicode``, ``case``, ``traditional_to_simplified``).
    """
    multi, folded = _grouped(vc)
    if multi.height == 0:
        return None
    checks = [c for c in multi.columns if c.startswith("k:")]
    per_group = (multi.sort(["n", "v"], descending=[True, False])
                 .group_by("k", maintain_order=True)
                 .agg(pl.col("v"), pl.col("n"), *[(pl.col(c).n_unique() > 1).alias(c) for c in checks])
                 .with_columns(pl.col("n").list.slice(1).list.sum().alias("moved"))
                 .sort(["moved", "k"], descending=[True, False]))
    needed = {c[2:] for c in checks if per_group.get_column(c).any()}
    settings: dict[str, Any] = {}
    for name in ("unicode", "collapse_whitespace", "strip"):
        if name in needed:
            settings[name] = _FULL[name]
    if "case" in needed:
        settings["case"] = _case(per_group)
    if folded and "traditional_to_simplified" in needed:
        settings["traditional_to_simplified"] = True
    kept = per_group.head(GROUPS_KEPT)
    rule = {**_FULL, "case": settings.get("case", "none")}  # what the rule does with these settings
    merged = kept.select(normalize_expr(pl.col("v").list.first(), rule).alias("m")).get_column("m").to_list()
    if "traditional_to_simplified" in settings:
        t2s = _simplified_map(pl.Series(merged, dtype=pl.String)) or {}
        merged = [t2s.get(m, m) for m in merged]
    groups = []
    for row, into in zip(kept.iter_rows(named=True), merged, strict=True):
        differs = [c[2:] for c in checks if row[c]]
        groups.append({"value": row["v"][0], "count": int(row["n"][0]),
                       "variants": [{"value": v, "count": int(n)} for v, n in zip(row["v"][1:], row["n"][1:], strict=True)],
                       "differs_by": _reasons(differs, row["v"]), "merged": into})
    return {"groups": groups, "groups_total": per_group.height, "rows": int(per_group.get_column("moved").sum()),
            "settings": settings}


def _case(per_group: pl.DataFrame) -> str:
    """``upper`` when most rows of the groups that differ in case are spelt in capitals, else ``lower``."""
    cased = per_group.filter(pl.col("k:case"))
    upper = sum(int(n) for v, n in zip(cased.get_column("v").list.first(), cased.get_column("n").list.first(),
                                      strict=True) if v.upper() == v != v.lower())
    return "upper" if upper * 2 > int(cased.get_column("n").list.first().sum()) else "lower"


def _reasons(settings: list[str], values: list[str]) -> list[str]:
    """What the spellings differ by, in the user's words (NFKC's full-width forms are 'character width')."""
    out: list[str] = []
    for s in settings:
        reason = REASONS[s]
        if s == "unicode" and any(ch in _WIDE for v in values for ch in v):
            reason = REASONS["width"]
        if reason not in out:
            out.append(reason)
    return out or [REASONS["unicode"]]
