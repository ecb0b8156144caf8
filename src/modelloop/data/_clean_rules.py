"""One function per cleaning action: ``(df, rule, ctx) -> (df, change, step)``.

``change`` is what the rule did (counts and details for the lineage record); ``step`` is the part
that must be replayed on incoming records at prediction time (learned impute values, clip bounds,
text normalization, type coercion, dropped columns), or None for row-level actions (dropping
duplicates, outliers or mislabelled rows) that only make sense on training data.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from ..errors import ConfigError, DataError
from ._expr import parse_expr
from ._profile import BOOL_STRINGS, json_value
from ._text_norm import normalize_expr
from ._tables import is_internal, is_numeric, is_stringy, preview
from .label_issues import find_label_issues
from .quality_config import (ClipOutliers, CoerceTypes, DropColumns, DropDuplicates, DropLabelIssues,
                             DropOutliers, DropRows, Impute, MergeDuplicates, NormalizeText, RelabelLabelIssues)

__all__ = ["RULES", "Ctx", "literal", "replay_step"]

TRUE_STRINGS = {"true", "yes", "y", "t", "1"}


@dataclass
class Ctx:
    index: int
    target: str | None

    @property
    def where(self) -> str:
        return f"clean.rules[{self.index}]"


Change = dict[str, Any]
Step = dict[str, Any]


def _change(ctx: Ctx, action: str, columns: list[str], *, rows_changed: int = 0, cells_changed: int = 0,
            rows_dropped: int = 0, **details: Any) -> Change:
    return {"index": ctx.index, "action": action, "columns": columns, "rows_changed": int(rows_changed),
            "cells_changed": int(cells_changed), "rows_dropped": int(rows_dropped), "details": details}


def _data_columns(df: pl.DataFrame, ctx: Ctx, keep: Callable[[pl.DataType], bool]) -> list[str]:
    return [c for c, t in df.schema.items() if keep(t) and not is_internal(c) and c != ctx.target]


def literal(value: Any, dtype: pl.DataType) -> pl.Expr:
    """A literal of ``dtype`` from its JSON form (dates travel as ISO text)."""
    if dtype == pl.Date and isinstance(value, str):
        return pl.lit(dt.date.fromisoformat(value))
    if isinstance(dtype, pl.Datetime) and isinstance(value, str):
        return pl.lit(dt.datetime.fromisoformat(value)).cast(dtype)
    if is_stringy(dtype):
        return pl.lit(str(value)).cast(dtype) if dtype != pl.String else pl.lit(str(value))
    return pl.lit(value).cast(dtype)


def _changed_cells(before: pl.DataFrame, after: pl.DataFrame, cols: list[str]) -> tuple[int, int, dict[str, int]]:
    """(rows with any change, cells changed, per column) between two aligned frames."""
    if not cols:
        return 0, 0, {}
    masks = pl.DataFrame({c: before.get_column(c).cast(pl.String).ne_missing(after.get_column(c).cast(pl.String))
                          for c in cols})
    per = {c: int(masks.get_column(c).sum()) for c in cols}
    rows = int(masks.select(pl.any_horizontal(pl.all())).to_series().sum())
    return rows, sum(per.values()), per


# ---- row selection ------------------------------------------------------------------------------
def drop_duplicates(df: pl.DataFrame, rule: DropDuplicates, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    subset = rule.subset or [c for c in df.columns if not is_internal(c)]
    out = df.unique(subset=subset, keep=rule.keep, maintain_order=True)
    return out, _change(ctx, rule.action, subset, rows_dropped=df.height - out.height, keep=rule.keep), None


def merge_duplicates(df: pl.DataFrame, rule: MergeDuplicates, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    keys = rule.keys
    has_key = pl.all_horizontal(pl.col(keys).is_not_null())
    keyed, unkeyed = df.filter(has_key), df.filter(~has_key)
    others = [c for c in df.columns if c not in keys]
    pick = (lambda e: e.drop_nulls().first()) if rule.prefer == "first" else (lambda e: e.drop_nulls().last())
    merged = keyed.group_by(keys, maintain_order=True).agg([pick(pl.col(c)).alias(c) for c in others])
    conflicts = keyed.group_by(keys).agg([pl.col(c).drop_nulls().n_unique().alias(c) for c in others
                                          if not is_internal(c)])
    n_conf = {c: int((conflicts.get_column(c) > 1).sum()) for c in conflicts.columns if c not in keys}
    base = keyed.unique(subset=keys, keep=rule.prefer, maintain_order=True)
    filled = int(base.null_count().sum_horizontal().item() - merged.null_count().sum_horizontal().item()) \
        if base.height else 0
    out = pl.concat([merged.select(df.columns), unkeyed], how="vertical_relaxed")
    groups = int((keyed.group_by(keys).len().get_column("len") > 1).sum()) if keyed.height else 0
    return out, _change(ctx, rule.action, keys, rows_changed=groups, cells_changed=filled,
                        rows_dropped=df.height - out.height, groups_merged=groups,
                        conflicting_values={c: n for c, n in n_conf.items() if n}), None


def _bounds(df: pl.DataFrame, rule: ClipOutliers | DropOutliers, ctx: Ctx) -> dict[str, tuple[float, float]]:
    cols = rule.columns or _data_columns(df, ctx, is_numeric)
    for c in cols:
        if not is_numeric(df.schema[c]):
            raise ConfigError(f"{ctx.where} ({rule.action}): column '{c}' is {df.schema[c]}, not numeric; "
                              f"coerce it first (coerce_types) or leave it out of columns")
    if not cols:
        return {}
    qs = (0.25, 0.75) if rule.method == "iqr" else (rule.lower, rule.upper)
    row = df.select([pl.col(c).cast(pl.Float64).quantile(q).alias(f"{c}\x00{q}") for c in cols for q in qs]
                    ).row(0, named=True)
    out = {}
    for c in cols:
        lo, hi = row[f"{c}\x00{qs[0]}"], row[f"{c}\x00{qs[1]}"]
        if lo is None or hi is None:
            continue
        if rule.method == "iqr":
            iqr = hi - lo
            lo, hi = lo - rule.factor * iqr, hi + rule.factor * iqr
        if df.schema[c].is_integer():
            lo, hi = math.ceil(lo), math.floor(hi)
        out[c] = (lo, hi)
    return out


def clip_outliers(df: pl.DataFrame, rule: ClipOutliers, ctx: Ctx) -> tuple[pl.DataFrame, Change, Step]:
    bounds = _bounds(df, rule, ctx)
    out = df.with_columns([pl.col(c).clip(lo, hi) for c, (lo, hi) in bounds.items()])
    rows, cells, per = _changed_cells(df, out, list(bounds))
    step = {"op": "clip", "bounds": {c: [lo, hi] for c, (lo, hi) in bounds.items()}}
    return out, _change(ctx, rule.action, list(bounds), rows_changed=rows, cells_changed=cells, per_column=per,
                        bounds=step["bounds"]), step


def drop_outliers(df: pl.DataFrame, rule: DropOutliers, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    bounds = _bounds(df, rule, ctx)
    outside = {c: ((pl.col(c) < lo) | (pl.col(c) > hi)).fill_null(False) for c, (lo, hi) in bounds.items()}
    if not outside:
        return df, _change(ctx, rule.action, []), None
    per = df.select([m.sum().alias(c) for c, m in outside.items()]).row(0, named=True)
    out = df.filter(~pl.any_horizontal(list(outside.values())))
    return out, _change(ctx, rule.action, list(bounds), rows_dropped=df.height - out.height,
                        per_column={c: int(v) for c, v in per.items()},
                        bounds={c: [lo, hi] for c, (lo, hi) in bounds.items()}), None


def drop_rows(df: pl.DataFrame, rule: DropRows, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    expr, used = parse_expr(rule.expr, df.columns, where=f"{ctx.where} (drop_rows)")
    out = df.filter(~expr.fill_null(False))
    return out, _change(ctx, rule.action, used, rows_dropped=df.height - out.height, expr=rule.expr), None


def _label_suspects(df: pl.DataFrame, rule: DropLabelIssues | RelabelLabelIssues, ctx: Ctx
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if ctx.target is None or ctx.target not in df.columns:
        raise ConfigError(f"{ctx.where} ({rule.action}): needs the target column (data.target), got "
                          f"{ctx.target!r}; available columns: {', '.join(df.columns[:40])}")
    res = find_label_issues(df, ctx.target, features=rule.features, model=rule.model, folds=rule.folds,
                            seed=rule.seed)
    cap = int(rule.max_share * df.height)
    chosen = [s for s in res.suspects if s["confidence"] >= rule.min_confidence][:cap]
    _refuse_overlap(chosen, res.per_class, rule, ctx)
    info = {"checked_rows": res.checked_rows, "suspects": res.total, "acted_on": len(chosen),
            "examples": chosen[:5]}
    return chosen, info


def _refuse_overlap(chosen: list[dict[str, Any]], per_class: list[dict[str, Any]],
                    rule: DropLabelIssues | RelabelLabelIssues, ctx: Ctx) -> None:
    """DataError when ``chosen`` holds more than ``rule.max_class_share`` of a class's rows.

    Confident learning flags every row of a class that looks like another class. A few such rows
    are wrong labels; a large share of a class means the classes overlap, and on an imbalanced
    target dropping (or relabelling) them deletes the real cases of the minority class.
    """
    verb, doing = ("drop", "dropping") if rule.action == "drop_label_issues" else ("relabel", "relabelling")
    for c in per_class:
        n = sum(s["given_label"] == c["label"] for s in chosen)
        share = n / c["rows"] if c["rows"] else 0.0
        if share > rule.max_class_share:
            needed = math.ceil(share * 100) / 100
            raise DataError(
                f"{ctx.where} ({rule.action}): would {verb} {n} of the {c['rows']} rows labelled "
                f"{c['label']!r} ({share:.1%}), more than max_class_share = {rule.max_class_share:g}. So many "
                f"suspects in one class mean class {c['label']!r} overlaps class {c['suggested']!r} (the "
                f"features cannot tell them apart), not that the labels are wrong, and {doing} them would "
                f"{'delete' if verb == 'drop' else 'mislabel'} real {c['label']!r} rows; `modelloop profile` "
                f"lists the suspects per class. To {verb} them anyway, set "
                f"max_class_share: {needed:g} (or 1) on this rule")


def drop_label_issues(df: pl.DataFrame, rule: DropLabelIssues, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    chosen, info = _label_suspects(df, rule, ctx)
    rows = [s["row"] for s in chosen]
    out = df.with_row_index("__pos").filter(~pl.col("__pos").is_in(rows)).drop("__pos")
    return out, _change(ctx, rule.action, [str(ctx.target)], rows_dropped=len(rows), **info), None


def relabel_label_issues(df: pl.DataFrame, rule: RelabelLabelIssues, ctx: Ctx) -> tuple[pl.DataFrame, Change, None]:
    chosen, info = _label_suspects(df, rule, ctx)
    t = str(ctx.target)
    y = df.get_column(t).to_list()
    for s in chosen:
        y[s["row"]] = s["suggested_label"]
    out = df.with_columns(pl.Series(t, y, dtype=df.schema[t]))
    return out, _change(ctx, rule.action, [t], rows_changed=len(chosen), cells_changed=len(chosen), **info), None


# ---- replayable ---------------------------------------------------------------------------------
def _learn_value(df: pl.DataFrame, c: str, strategy: str, rule: Impute, ctx: Ctx) -> Any:
    t = df.schema[c]
    if strategy == "constant":
        return rule.value
    if strategy in ("median", "mean") and not (is_numeric(t) or t.is_temporal()):
        raise ConfigError(f"{ctx.where} (impute): strategy {strategy} needs a numeric column, '{c}' is {t}; "
                          f"use strategy: mode or constant")
    col = pl.col(c).drop_nulls()
    e = {"median": col.median(), "mean": col.mean(), "mode": col.mode().sort().first()}[strategy]
    value = df.select(e.cast(t) if t.is_temporal() else e).item()
    if value is not None and t.is_integer() and strategy in ("median", "mean"):
        value = round(value)
    return json_value(value)


def impute(df: pl.DataFrame, rule: Impute, ctx: Ctx) -> tuple[pl.DataFrame, Change, Step]:
    if rule.strategy == "constant" and rule.value is None:
        raise ConfigError(f"{ctx.where} (impute): strategy constant needs a value, e.g. value: 0")
    explicit = rule.columns is not None
    cols: list[str] = list(rule.columns) if rule.columns is not None else [c for c in _data_columns(df, ctx, lambda t: True)
                                          if df.get_column(c).null_count()]
    values: dict[str, dict[str, Any]] = {}
    skipped = []
    for c in cols:
        strategy = rule.strategy
        if not explicit and strategy in ("median", "mean") and not (is_numeric(df.schema[c])
                                                                    or df.schema[c].is_temporal()):
            strategy = "mode"
        v = _learn_value(df, c, strategy, rule, ctx)
        if v is None:
            skipped.append(c)
            continue
        values[c] = {"value": v, "strategy": strategy}
    step = {"op": "impute", "values": {c: v["value"] for c, v in values.items()},
            "indicators": [c for c in cols if rule.indicator]}
    filled = {c: int(df.get_column(c).null_count()) for c in values}
    rows = int(df.select(pl.any_horizontal([pl.col(c).is_null() for c in values])).to_series().sum()) if values else 0
    out = replay_step(df, step, where=ctx.where)
    return out, _change(ctx, rule.action, cols, rows_changed=rows, cells_changed=sum(filled.values()),
                        values={c: v["value"] for c, v in values.items()},
                        strategies={c: v["strategy"] for c, v in values.items()}, filled=filled,
                        indicators=[f"{c}__missing" for c in step["indicators"]],
                        skipped_all_missing=skipped), step


def normalize_text(df: pl.DataFrame, rule: NormalizeText, ctx: Ctx) -> tuple[pl.DataFrame, Change, Step]:
    cols = rule.columns if rule.columns is not None else _data_columns(df, ctx, is_stringy)
    for c in cols:
        if not is_stringy(df.schema[c]):
            raise ConfigError(f"{ctx.where} (normalize_text): column '{c}' is {df.schema[c]}, not text")
    step = {"op": "normalize_text", "columns": cols, **rule.model_dump(include={
        "unicode", "collapse_whitespace", "strip", "case", "empty_as_null", "width", "traditional_to_simplified"})}
    out = replay_step(df, step, where=ctx.where)
    rows, cells, per = _changed_cells(df, out, cols)
    return out, _change(ctx, rule.action, cols, rows_changed=rows, cells_changed=cells, per_column=per), step


def coerce_types(df: pl.DataFrame, rule: CoerceTypes, ctx: Ctx) -> tuple[pl.DataFrame, Change, Step]:
    step = {"op": "coerce_types", "columns": dict(rule.columns), "datetime_format": rule.datetime_format,
            "dtypes": {c: _numeric_target(df, c) for c, to in rule.columns.items() if to == "numeric"}}
    out = replay_step(df, step, where=ctx.where)
    report, cells = {}, 0
    for c, to in rule.columns.items():
        before, after = df.get_column(c), out.get_column(c)
        text = before.cast(pl.String)
        blank = (text.str.strip_chars() == "").fill_null(False) if is_stringy(before.dtype) else \
            pl.Series([False] * len(before))
        failed_mask = before.is_not_null() & after.is_null() & ~blank
        examples = before.filter(failed_mask).unique(maintain_order=True).head(5).to_list()
        converted = int((after.is_not_null()).sum()) if before.dtype != after.dtype else 0
        cells += converted + int(failed_mask.sum())
        report[c] = {"to": to, "from_dtype": str(before.dtype), "dtype": str(after.dtype),
                     "failed": int(failed_mask.sum()), "blank_to_missing": int(blank.sum()),
                     "examples": [json_value(e) for e in examples]}
        if report[c]["failed"]:
            report[c]["message"] = (f"column '{c}': {report[c]['failed']} values could not be read as {to} "
                                    f"and became missing (e.g. {preview(examples)})")
    rows = int(df.height) if cells else 0
    return out, _change(ctx, rule.action, list(rule.columns), rows_changed=rows, cells_changed=cells,
                        per_column=report), step


def drop_columns(df: pl.DataFrame, rule: DropColumns, ctx: Ctx) -> tuple[pl.DataFrame, Change, Step]:
    if ctx.target in rule.columns:
        raise ConfigError(f"{ctx.where} (drop_columns): must not drop the target column '{ctx.target}'")
    step = {"op": "drop_columns", "columns": list(rule.columns)}
    return df.drop(rule.columns), _change(ctx, rule.action, list(rule.columns)), step


# ---- replay ----------------------------------------------------------------------------------------
def _numeric_target(df: pl.DataFrame, c: str) -> str:
    """Int64 when every parseable value is a whole number written as one, else Float64."""
    t = df.schema[c]
    if is_numeric(t):
        return str(t)
    if t == pl.Boolean:
        return "Int8"
    text = pl.col(c).cast(pl.String).str.strip_chars()
    same = df.select(text.cast(pl.Int64, strict=False).is_null().sum()
                     == text.cast(pl.Float64, strict=False).is_null().sum()).item()
    return "Int64" if same else "Float64"


def _dtype(name: str) -> pl.DataType:
    if name.startswith("Datetime"):
        return pl.Datetime("us")
    dtype = getattr(pl, name, None)
    if dtype is None:
        raise DataError(f"cleaning plan: unknown dtype {name!r}")
    return dtype


def _coerce(df: pl.DataFrame, c: str, to: str, fmt: str | None, dtype: str) -> pl.Expr:
    t = df.schema[c]
    x = pl.col(c)
    if to == "string":
        return x.cast(pl.String)
    if to == "numeric":
        if is_numeric(t) or t == pl.Boolean:
            return x.cast(_dtype(dtype))
        return x.cast(pl.String).str.strip_chars().cast(_dtype(dtype), strict=False)
    if to == "bool":
        if t == pl.Boolean:
            return x
        if is_numeric(t):
            return pl.when(x == 1).then(True).when(x == 0).then(False).otherwise(None)
        low = x.cast(pl.String).str.strip_chars().str.to_lowercase()
        false = sorted(BOOL_STRINGS - TRUE_STRINGS)
        return pl.when(low.is_in(sorted(TRUE_STRINGS))).then(True).when(low.is_in(false)).then(False).otherwise(None)
    if t.is_temporal():
        return x
    return x.cast(pl.String).str.strip_chars().str.to_datetime(format=fmt, strict=False, time_unit="us")


def _coerce_datetime_fallback(df: pl.DataFrame, c: str) -> pl.Series:
    """Mixed date formats Polars cannot infer one format for: parse each distinct value with pandas."""
    import pandas as pd

    s = df.get_column(c).cast(pl.String)
    uniq = s.drop_nulls().unique()
    parsed = pd.to_datetime(pd.Series(uniq.to_list(), dtype=object), errors="coerce", format="mixed")
    mapping = pl.DataFrame({"v": uniq, "d": pl.Series(parsed.to_numpy(), dtype=pl.Datetime("us"))})
    return s.to_frame("v").join(mapping, on="v", how="left", maintain_order="left").get_column("d").alias(c)


def replay_step(df: pl.DataFrame, step: Step, *, where: str, skip_missing: tuple[str, ...] = ()) -> pl.DataFrame:
    """Apply one recorded step (``op``: impute, clip, normalize_text, coerce_types, drop_columns)."""
    op = step["op"]
    if op == "impute":
        named = [*step["values"], *[c for c in step["indicators"] if c not in step["values"]]]
    else:
        named = list(step.get("bounds") or step.get("columns") or [])
    needed = [c for c in named if c not in skip_missing]
    if op != "drop_columns":
        absent = [c for c in needed if c not in df.columns]
        if absent:
            raise DataError(f"{where} ({op}): column '{absent[0]}' is missing from the records; "
                            f"their columns: {', '.join(df.columns[:40])}")
    present = [c for c in needed if c in df.columns]
    if op == "impute":
        inds = [pl.col(c).is_null().cast(pl.Int8).alias(f"{c}__missing") for c in step["indicators"] if c in present]
        # a column that is missing in every incoming record has dtype Null: it takes the fill's type
        fills = [pl.col(c).fill_null(pl.lit(v) if df.schema[c] == pl.Null else literal(v, df.schema[c]))
                 for c, v in step["values"].items() if c in present]
        return df.with_columns(inds).with_columns(fills)
    if op == "clip":
        return df.with_columns([pl.col(c).clip(*step["bounds"][c]) for c in present])
    if op == "drop_columns":
        return df.drop([c for c in named if c in df.columns])
    if op == "normalize_text":
        return df.with_columns([normalize_expr(pl.col(c).cast(pl.String), step).alias(c) for c in present])
    if op == "coerce_types":
        fmt, dtypes = step.get("datetime_format"), step.get("dtypes", {})
        out = df.with_columns([_coerce(df, c, step["columns"][c], fmt, dtypes.get(c, "Float64")).alias(c)
                               for c in present if step["columns"][c] != "datetime"])
        for c in present:
            if step["columns"][c] == "datetime":
                try:
                    out = out.with_columns(_coerce(out, c, "datetime", fmt, "Datetime").alias(c))
                except pl.exceptions.PolarsError:
                    out = out.with_columns(_coerce_datetime_fallback(out, c))
        return out
    raise DataError(f"{where}: unknown cleaning step {op!r}; the plan was written by a newer modelloop?")


RULES: dict[str, Callable[..., tuple[pl.DataFrame, Change, Step | None]]] = {
    "drop_duplicates": drop_duplicates, "merge_duplicates": merge_duplicates, "impute": impute,
    "clip_outliers": clip_outliers, "drop_outliers": drop_outliers, "normalize_text": normalize_text,
    "coerce_types": coerce_types, "drop_columns": drop_columns, "drop_rows": drop_rows,
    "drop_label_issues": drop_label_issues, "relabel_label_issues": relabel_label_issues,
}
