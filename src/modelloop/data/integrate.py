"""Combine several sources into one table, reporting where they disagree.

``how="union"`` stacks the rows (columns matched by name, missing ones null, a ``_source`` column
saying where each row came from); ``how="join"`` joins every source onto the first one by ``keys``.
Either way, a shared column whose values differ for the same key in two sources becomes a
``source_conflict`` finding (a consistency problem that ``profile`` scores when given the findings).
In a join the first source listing a value wins; in a union every row is kept.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import polars as pl

from ..errors import ConfigError, DataError, cap_list
from ._findings import Finding
from ._tables import like_input, to_polars

__all__ = ["SOURCE_COLUMN", "integrate"]

SOURCE_COLUMN = "_source"


def integrate(frames: Mapping[str, Any], how: Literal["union", "join"] = "union",
              keys: Sequence[str] | None = None, *, join_type: Literal["left", "inner", "full"] = "left",
              source_column: str | None = SOURCE_COLUMN) -> tuple[Any, list[Finding]]:
    """``(combined, findings)``; pandas in (first source) gives pandas out.

    Raises DataError when a source lacks a key column or two sources hold a column in types that
    cannot be combined, ConfigError for an empty ``frames`` or a join without ``keys``.
    """
    if not frames:
        raise ConfigError("integrate: frames is empty; pass {source_name: DataFrame, ...}")
    if how not in ("union", "join"):
        raise ConfigError(f"integrate: how must be 'union' or 'join', got {how!r}")
    keys = list(keys or [])
    if how == "join" and not keys:
        raise ConfigError("integrate: how='join' needs keys, e.g. keys=['customer_id']")
    data = {name: to_polars(df, f"source '{name}'") for name, df in frames.items()}
    for name, df in data.items():
        for k in keys:
            if k not in df.columns:
                raise DataError(f"source '{name}' has no key column '{k}'; its columns: {cap_list(df.columns)}")
    _check_types(data)
    first = next(iter(frames.values()))
    if how == "union":
        out, findings = _union(data, keys, source_column)
    else:
        out, findings = _join(data, keys, join_type)
    return like_input(out, first), findings


def _compatible(a: pl.DataType, b: pl.DataType) -> bool:
    return (a == b or pl.Null in (a, b) or (a.is_numeric() and b.is_numeric())
            or (a.is_temporal() and b.is_temporal()) or {a, b} <= {pl.String, pl.Categorical})


def _check_types(data: dict[str, pl.DataFrame]) -> None:
    """DataError for a column held in types that would only combine as text (e.g. Int64 and String)."""
    seen: dict[str, tuple[str, pl.DataType]] = {}
    for name, df in data.items():
        for c, t in df.schema.items():
            if c in seen and not _compatible(seen[c][1], t):
                raise DataError(f"column '{c}' is {seen[c][1]} in source '{seen[c][0]}' but {t} in source "
                                f"'{name}'; coerce it first (clean rule coerce_types)")
            seen.setdefault(c, (name, t))


def _union(data: dict[str, pl.DataFrame], keys: list[str], source_column: str | None
           ) -> tuple[pl.DataFrame, list[Finding]]:
    src = source_column or "__source"
    parts = [df.with_columns(pl.lit(name).alias(src)) for name, df in data.items()]
    combined = pl.concat(parts, how="diagonal_relaxed")
    findings: list[Finding] = []
    if keys:
        shared = [c for c in combined.columns if c not in (*keys, src)
                  and sum(c in df.columns for df in data.values()) > 1]
        findings = _union_conflicts(combined, keys, shared, src)
    if source_column is None:
        combined = combined.drop(src)
    return combined, findings


def _union_conflicts(combined: pl.DataFrame, keys: list[str], shared: list[str], src: str) -> list[Finding]:
    multi = (combined.group_by(keys)
             .agg(pl.col(src).n_unique().alias("__ns"),
                  *[pl.col(c).drop_nulls().n_unique().alias(c) for c in shared])
             .filter(pl.col("__ns") > 1))
    findings = []
    for c in shared:
        bad = multi.filter(pl.col(c) > 1)
        if bad.height == 0:
            continue
        eg_key = bad.row(0, named=True)
        match = pl.all_horizontal([pl.col(k) == eg_key[k] for k in keys])
        eg = combined.filter(match & pl.col(c).is_not_null()).select(src, c).unique(maintain_order=True).head(3)
        findings.append(_finding(c, keys, bad.height, multi.height, eg_key,
                                 [(s, v) for s, v in eg.iter_rows()], "every row was kept"))
    return findings


def _join(data: dict[str, pl.DataFrame], keys: list[str], join_type: str) -> tuple[pl.DataFrame, list[Finding]]:
    names = list(data)
    out = data[names[0]]
    findings: list[Finding] = []
    for name in names[1:]:
        other = data[name]
        try:
            other = other.with_columns([pl.col(k).cast(out.schema[k]) for k in keys])
        except pl.exceptions.PolarsError:
            k = next(k for k in keys if other.schema[k] != out.schema[k])
            raise DataError(f"join key '{k}' is {other.schema[k]} in source '{name}' but {out.schema[k]} in "
                            f"'{names[0]}'; coerce it first (clean rule coerce_types)") from None
        n_dup = other.height - other.select(keys).n_unique()
        if n_dup:
            findings.append(Finding("duplicate_keys", "+".join(keys), "warning", n_dup,
                                    f"source '{name}': {n_dup} rows repeat a key ({', '.join(keys)}); the first "
                                    f"row per key was joined", {"source": name}))
            other = other.unique(subset=keys, keep="first", maintain_order=True)
        earlier = "+".join(names[: names.index(name)])
        shared = [c for c in other.columns if c in out.columns and c not in keys]
        right = other.rename({c: f"{c}\x00{name}" for c in shared})
        joined = out.join(right, on=keys, how=join_type, coalesce=True, nulls_equal=False)  # type: ignore[arg-type]
        for c in shared:
            rc = f"{c}\x00{name}"
            both = pl.col(c).is_not_null() & pl.col(rc).is_not_null()
            differ = both & (pl.col(c) != pl.col(rc).cast(joined.schema[c], strict=False)).fill_null(True)
            bad = joined.filter(differ)
            if bad.height:
                eg = bad.row(0, named=True)
                checked = int(joined.select(both.sum()).item())
                findings.append(_finding(c, keys, bad.height, checked, eg,
                                         [(earlier, eg[c]), (name, eg[rc])],
                                         f"the value from '{earlier}' was kept"))
        joined = joined.with_columns([pl.coalesce(pl.col(c), pl.col(f"{c}\x00{name}").cast(joined.schema[c],
                                                                                             strict=False))
                                      for c in shared]).drop([f"{c}\x00{name}" for c in shared])
        out = joined
    return out, findings


def _finding(column: str, keys: list[str], n_bad: int, checked: int, eg_key: dict[str, Any],
             examples: list[tuple[str, Any]], outcome: str) -> Finding:
    key_text = ", ".join(f"{k}={eg_key[k]!r}" for k in keys)
    values = " vs ".join(f"{v!r} ({s})" for s, v in examples)
    return Finding(
        "source_conflict", column, "warning", n_bad,
        f"column '{column}': {n_bad} of {checked} shared keys ({', '.join(keys)}) differ between sources "
        f"(e.g. {key_text}: {values}); {outcome}",
        {"keys": keys, "checked": checked, "sources": sorted({s for s, _ in examples}),
         "examples": [{"source": s, "value": v if isinstance(v, (str, int, float, bool)) or v is None else str(v)}
                      for s, v in examples]})
