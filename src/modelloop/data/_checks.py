"""Table-level checks: declared rules (validity), cross-column rules and key agreement
(consistency), exact duplicates, single-feature target leakage and correlated pairs.

Each function returns ``Check`` measurements for the scores and ``Finding`` entries for the report.
Rule checks are built as Polars expressions and counted in one select. Every check takes a Polars
frame, eager or lazy (e.g. ``pl.scan_parquet``), and collects only the columns and rows it needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigError
from ._expr import parse_expr
from ._findings import Check, Finding
from ._profile import BOOL_STRINGS, json_value
from ._tables import check_columns, column_batches, is_numeric, is_stringy, preview
from .quality_config import ColumnRule, CrossCheck, LeakageConfig

Frame = pl.DataFrame | pl.LazyFrame
POS = "__row_pos"  # row position column added inside queries
_FOLD = np.uint64(0x100000001B3)  # the 64-bit FNV prime: folds per-column hashes into a row hash

__all__ = [
    "correlated_pairs",
    "cross_checks",
    "duplicate_rows",
    "key_checks",
    "leakage_scores",
    "rule_checks",
    "share_severity",
    "take_rows",
    "type_violation",
]


def share_severity(share: float, warn: float = 0.01, error: float = 0.05) -> str:
    return "error" if share >= error else "warning" if share >= warn else "info"


def type_violation(c: str, dtype: pl.DataType, kind: str | None) -> pl.Expr | None:
    """True where a present value is not of ``kind``; None when the dtype already guarantees it."""
    x = pl.col(c)
    if kind == "numeric":
        if is_numeric(dtype) or dtype == pl.Boolean:
            return None
        if is_stringy(dtype):
            text = x.cast(pl.String)
            return text.cast(pl.Float64, strict=False).is_null() & (text.str.strip_chars() != "")
        return x.is_not_null()
    if kind == "datetime":
        if dtype.is_temporal() or is_numeric(dtype):
            return None
        if is_stringy(dtype):
            return x.cast(pl.String).map_batches(_not_dates, return_dtype=pl.Boolean) & x.is_not_null()
        return x.is_not_null()
    if kind == "boolean":
        if dtype == pl.Boolean:
            return None
        if is_numeric(dtype):
            return ~x.is_in([0, 1])
        return ~x.cast(pl.String).str.to_lowercase().str.strip_chars().is_in(sorted(BOOL_STRINGS))
    return None


def _not_dates(values: pl.Series) -> pl.Series:
    """True where a text value is not a date as modelloop reads dates everywhere else (``dates.py``: ISO 8601
    with or without an offset, else a spelling that carries its year), so a value the model reads as a date is
    never reported as not one. Polars' own reader, used before, refused to be evaluated lazily on ISO times
    with an offset (``2024-03-05T08:55:00+02:00``, every API export), which failed ``profile`` on such a column
    with a message about ``quality.rules`` the user never wrote, and it guessed one format from the first value,
    so a column mixing offsets and local times read its other spelling as not dates."""
    from .dates import parse_datetimes

    return pl.Series(values.name, np.isnat(parse_datetimes(values.to_pandas()).to_numpy()))


def _rule_masks(c: str, dtype: pl.DataType, rule: ColumnRule, where: str) -> dict[str, tuple[pl.Expr, str]]:
    """Per rule property: (violation mask, what is allowed) — masks are null/False where fine."""
    x = pl.col(c)
    out: dict[str, tuple[pl.Expr, str]] = {}
    tv = type_violation(c, dtype, rule.type) if rule.type else None
    if tv is not None:
        out["type"] = (tv, f"values of type {rule.type}")
    if rule.min is not None or rule.max is not None:
        if not (is_numeric(dtype) or is_stringy(dtype)):
            raise ConfigError(f"{where}.min/max: needs a numeric column, '{c}' holds {dtype}")
        num = x.cast(pl.Float64, strict=False)
        if rule.min is not None:
            out["min"] = (num < rule.min, f">= {rule.min:g}")
        if rule.max is not None:
            out["max"] = (num > rule.max, f"<= {rule.max:g}")
    if rule.regex is not None:
        out["regex"] = (~x.cast(pl.String).str.contains(f"^(?:{rule.regex})$"), f"matching {rule.regex!r}")
    if rule.allowed is not None:
        if is_numeric(dtype):
            try:
                allowed: list[Any] = [float(a) for a in rule.allowed]
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.allowed: '{c}' is numeric, so every allowed value must be a "
                                  f"number, got {rule.allowed}") from None
            out["allowed"] = (~x.cast(pl.Float64).is_in(allowed), f"one of {rule.allowed}")
        else:
            out["allowed"] = (~x.cast(pl.String).is_in([str(a) for a in rule.allowed]),
                              f"one of {rule.allowed}")
    if rule.unique:
        out["unique"] = (x.is_not_null() & ~x.is_first_distinct(), "unique values")
    if rule.not_null:
        out["not_null"] = (x.is_null(), "no missing values")
    return out


def rule_checks(df: Frame, rules: dict[str, ColumnRule], kinds: dict[str, str]
                ) -> tuple[list[Check], list[Finding]]:
    """Validity: each declared rule property and each declared kind a column's dtype does not enforce."""
    lf = df.lazy()
    schema = lf.collect_schema()
    check_columns(rules, schema.names(), "quality.rules")
    masks: dict[tuple[str, str], tuple[pl.Expr, str]] = {}
    for c, kind in kinds.items():
        tv = type_violation(c, schema[c], kind) if c in schema else None
        if tv is not None and not (c in rules and rules[c].type):
            masks[(c, "kind")] = (tv, f"values of the declared kind {kind}")
    for c, rule in rules.items():
        for prop, m in _rule_masks(c, schema[c], rule, f"quality.rules.{c}").items():
            masks[(c, prop)] = m
    if not masks:
        return [], []
    exprs = []
    for i, ((c, prop), (mask, _)) in enumerate(masks.items()):
        n_expr = pl.len() if prop == "not_null" else pl.col(c).is_not_null().sum()
        exprs += [mask.fill_null(False).sum().alias(f"f{i}"), n_expr.alias(f"n{i}")]
    try:
        row = lf.select(exprs).collect().row(0, named=True)
    except pl.exceptions.ComputeError as exc:
        raise ConfigError(f"quality.rules: a rule cannot be evaluated ({str(exc).splitlines()[0]})") from exc
    checks: list[Check] = []
    findings: list[Finding] = []
    for i, ((c, prop), (mask, allowed)) in enumerate(masks.items()):
        failed, checked = int(row[f"f{i}"]), int(row[f"n{i}"])
        checks.append(Check("validity", f"{c}.{prop}", checked, failed))
        if failed:
            # distinct examples (among the first 1000 bad values): one bad value repeated is shown once,
            # and the others beside it
            examples = (lf.filter(mask.fill_null(False)).select(c).head(1000).unique(maintain_order=True)
                        .head(3).collect().to_series().to_list())
            share = failed / max(checked, 1)
            kind = "type_mismatch" if prop in ("kind", "type") else "rule_violation"
            what = "missing" if prop == "not_null" else f"break rule '{prop}'"
            eg = f" (e.g. {preview(examples)})" if prop != "not_null" else ""
            findings.append(Finding(
                kind, c, "error" if kind == "type_mismatch" else share_severity(share, 0.0, 0.01), failed,
                f"column '{c}': {failed} of {checked} values ({share:.1%}) {what}; allowed: {allowed}{eg}",
                {"rule": prop, "share": share, "examples": [json_value(e) for e in examples]}))
    return checks, findings


def cross_checks(df: Frame, checks_cfg: list[CrossCheck]) -> tuple[list[Check], list[Finding]]:
    """Consistency: each ``expr`` must hold on every row where it can be evaluated."""
    if not checks_cfg:
        return [], []
    lf = df.lazy()
    parsed = [parse_expr(cc.expr, lf.collect_schema().names(), where=f"quality.checks[{i}] ({cc.name})")
              for i, cc in enumerate(checks_cfg)]
    exprs = []
    for i, (e, _unused) in enumerate(parsed):
        exprs += [(~e).fill_null(False).sum().alias(f"f{i}"), e.is_not_null().sum().alias(f"n{i}")]
    try:
        row = lf.select(exprs).collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(f"quality.checks: cannot evaluate ({str(exc).splitlines()[0]}); compare columns of "
                          f"compatible types") from exc
    checks, findings = [], []
    for i, (cc, (e, used)) in enumerate(zip(checks_cfg, parsed, strict=True)):
        failed, checked = int(row[f"f{i}"]), int(row[f"n{i}"])
        checks.append(Check("consistency", cc.name, checked, failed))
        if failed:
            bad = lf.with_row_index(POS).filter((~e).fill_null(False)).select(POS).head(3).collect()
            rows = bad.get_column(POS).to_list()
            findings.append(Finding(
                "check_failed", used[0] if len(used) == 1 else None, cc.severity, failed,
                f"check '{cc.name}' ({cc.expr}) fails on {failed} of {checked} rows (e.g. rows {rows})",
                {"check": cc.name, "expr": cc.expr, "columns": used, "rows": rows}))
    return checks, findings


def key_checks(df: Frame, keys: list[str], where: str) -> tuple[list[Check], list[Finding]]:
    """Rows sharing a key: ``duplicate_keys``; and those that disagree on another column: ``key_conflict``.

    A hash of the key is read first (one number per row, streamed); the keys themselves only for the
    rows whose hash repeats, and the other columns only for the rows whose key repeats. The example
    key in a ``key_conflict`` message is the first conflicting one in row order.
    """
    lf = df.lazy()
    columns = lf.collect_schema().names()
    check_columns(keys, columns, where)
    key = pl.struct(keys) if len(keys) > 1 else pl.col(keys[0])
    name = "+".join(keys)
    hashed = (lf.select(keys).with_row_index(POS).filter(pl.all_horizontal(pl.col(keys).is_not_null()))
              .select(POS, key.hash(seed=7).alias("h")).collect(engine="streaming"))
    present = hashed.height
    candidates = hashed.get_column(POS).gather(pl.Series(_repeated_hashes(hashed.get_column("h").to_numpy())))
    del hashed
    # Every row of a repeated key is a candidate, so the exact test on the candidates finds them all.
    dup_keys = (take_rows(lf.select(keys), candidates).with_columns(candidates).filter(key.is_duplicated())
                if candidates.len() else pl.DataFrame())
    if dup_keys.height == 0:
        return [Check("consistency", f"key_agreement:{name}", present, 0)], []
    n_repeats = int(dup_keys.select((~key.is_first_distinct()).sum()).item())
    findings = [Finding("duplicate_keys", name, "warning", n_repeats,
                        f"key {name}: {n_repeats} rows repeat a key seen earlier "
                        f"({dup_keys.select(key.n_unique()).item()} keys occur more than once)")]
    dup_rows = take_rows(lf, dup_keys.get_column(POS))
    others = [c for c in columns if c not in keys and not c.startswith("_")]
    per_key = dup_rows.group_by(keys, maintain_order=True).agg([pl.col(c).n_unique().alias(c) for c in others] + [pl.len().alias("_n")])
    bad_rows = per_key.filter(pl.any_horizontal([pl.col(c) > 1 for c in others]) if others else pl.lit(False))
    n_bad = int(bad_rows.get_column("_n").sum()) if bad_rows.height else 0
    checks = [Check("consistency", f"key_agreement:{name}", present, n_bad)]
    for c in others:
        conflicted = per_key.filter(pl.col(c) > 1)
        if conflicted.height:
            eg = conflicted.row(0, named=True)
            eg_key = ", ".join(f"{k}={eg[k]!r}" for k in keys)
            findings.append(Finding(
                "key_conflict", c, "warning", conflicted.height,
                f"column '{c}': {conflicted.height} keys ({name}) have different values across their rows "
                f"(e.g. {eg_key})", {"keys": keys}))
    return checks, findings


def duplicate_rows(df: Frame) -> int:
    """Rows equal to an earlier row (hash first, then an exact check on the candidates).

    The row hash is built a batch of columns at a time (``column_batches``): each column's Polars hash
    is folded into one u64 per row with numpy, in place, so only a batch of columns and two hashes per
    row are ever held, not the whole table. (A struct hash of the batch by the streaming engine held
    ~70 MiB more at 1M rows, and took twice as long.)
    """
    lf = df.lazy()
    schema = lf.collect_schema()
    if not schema.names():
        return 0
    row_hash: np.ndarray | None = None
    for batch in column_batches(schema, schema.names()):
        part = lf.select(pl.col(c).hash(seed=7) for c in batch).collect()
        for h in part.iter_columns():
            if row_hash is None:
                row_hash = h.to_numpy().copy()
            else:  # FNV-style fold: an odd multiplier keeps every earlier column's bits in play
                row_hash *= _FOLD
                row_hash ^= h.to_numpy()
        del part
    assert row_hash is not None
    positions = _repeated_hashes(row_hash)
    del row_hash
    candidates = take_rows(lf, pl.Series(positions)) if len(positions) else None
    return candidates.height - candidates.n_unique() if candidates is not None else 0


def _repeated_hashes(hashes: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the values in ``hashes`` that occur more than once.

    A sorted copy finds the repeated values and a binary search marks their rows: about three u64s
    per row at most, where Polars' ``is_duplicated`` builds a hash table (~75 MiB at 1M rows).
    """
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return np.empty(0, dtype=np.int64)
    values = np.unique(ordered[1:][same])
    del ordered, same
    at = np.searchsorted(values, hashes)
    np.minimum(at, len(values) - 1, out=at)
    return np.flatnonzero(values[at] == hashes)


def take_rows(df: Frame, positions: pl.Series) -> pl.DataFrame:
    """The rows of ``df`` at ``positions``, in that order, streaming over ``df`` (positions unique).

    A batch of columns per pass (``column_batches``): a scanned table is then never decoded whole at once."""
    lf = df.lazy()
    wanted = positions.cast(pl.get_index_type()).implode()
    order = (positions.rank("ordinal") - 1).cast(pl.UInt32)
    schema = lf.collect_schema()
    parts = [lf.select(batch).with_row_index(POS).filter(pl.col(POS).is_in(wanted))
             .collect(engine="streaming").sort(POS).drop(POS)[order]
             for batch in column_batches(schema, schema.names())]
    return pl.concat(parts, how="horizontal").select(schema.names()) if parts else pl.DataFrame()


# ---- leakage -------------------------------------------------------------------------------------
def _codes(s: pl.Series, bins: int) -> np.ndarray:
    """Integer codes: quantile bins for numbers/dates, one code per value otherwise; missing = its own.

    Bins are ``(edge[i-1], edge[i]]``: a value equal to an edge stays below it. When most values are
    one number (a 0/1 flag with 2% ones, a mostly-zero amount) every quantile is that number, and the
    other way round the rare values would share its bin and the column would look like noise.
    """
    t = s.dtype
    if is_numeric(t) or t == pl.Boolean or t.is_temporal():
        x = (s.to_physical() if t.is_temporal() else s).cast(pl.Float64).to_numpy()
        ok = ~np.isnan(x)
        if not ok.any():
            return np.zeros(len(x), dtype=np.int64)
        edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, np.where(ok, x, 0.0), side="left")
        codes[~ok] = len(edges) + 1
        return codes.astype(np.int64)
    r = s.cast(pl.String).rank("dense")
    return r.fill_null(0).cast(pl.Int64).to_numpy()


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return 0.5
    ranks = _average_ranks(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank (``scipy.stats.rankdata``; the profile loads no SciPy)."""
    order = np.argsort(a, kind="mergesort")
    ordered = a[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(a)]  # a run of ties holds ranks starts+1 .. ends
    ranks = np.empty(len(a))
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(first) - 1]
    return ranks


def _oof_score(codes: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, k: int) -> float:
    ncodes = int(codes.max()) + 1
    if n_classes:
        prior = np.bincount(y, minlength=n_classes) / len(y)
        pred = np.empty((len(y), n_classes))
        for f in range(k):
            tr, te = fold != f, fold == f
            counts = np.bincount(codes[tr] * n_classes + y[tr], minlength=ncodes * n_classes)
            counts = counts.reshape(ncodes, n_classes).astype(float)
            pred[te] = ((counts + prior) / (counts.sum(1) + 1.0)[:, None])[codes[te]]
        if n_classes == 2:  # the AUC of class 1; class 0's is not used (and costs as much)
            return _auc((y == 1).astype(int), pred[:, 1])
        return float(np.mean([_auc((y == j).astype(int), pred[:, j]) for j in range(n_classes)]))
    mean = float(y.mean())
    out = np.empty(len(y))
    for f in range(k):
        tr, te = fold != f, fold == f
        sums = np.bincount(codes[tr], weights=y[tr], minlength=ncodes)
        cnt = np.bincount(codes[tr], minlength=ncodes)
        out[te] = ((sums + mean) / (cnt + 1.0))[codes[te]]
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - out) ** 2).sum()) / sst if sst > 0 else 0.0


def _pearson_r2(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(x)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return 0.0
    return float(np.corrcoef(x[ok], y[ok])[0, 1] ** 2)


def leakage_scores(sample: pl.DataFrame, target: str, features: list[str], kind: str,
                   cfg: LeakageConfig, seed: int = 0) -> tuple[dict[str, dict[str, Any]], list[Finding]]:
    """How well each feature *alone* predicts the target, out of fold (binned target rates).

    ``kind``: how the target is read (its task's head's ``target_kind``). Categorical (classes):
    one-vs-rest AUC of the per-value class frequencies; numeric: R² of the
    per-bin target mean (or the squared correlation, if higher). A score near 1 means the column
    (almost) is the target.
    """
    data = sample.filter(pl.col(target).is_not_null()) if sample.get_column(target).null_count() else sample
    if data.height < 30 or not features:
        return {}, []
    categorical = kind == "categorical"
    if categorical:
        y = data.get_column(target).cast(pl.String).rank("dense").cast(pl.Int64).to_numpy() - 1
        n_classes = int(y.max()) + 1
        if n_classes < 2:
            return {}, []
        metric = "auc"
    else:
        y = data.get_column(target).cast(pl.Float64).to_numpy()
        n_classes, metric = 0, "r2"
    k = 3
    fold = np.random.default_rng(seed).permutation(data.height) % k
    scores: dict[str, dict[str, Any]] = {}
    for c in features:
        s = data.get_column(c)
        codes = _codes(s, 32 if categorical else 64)
        score = _oof_score(codes, y, n_classes, fold, k)
        if not categorical and is_numeric(s.dtype):
            score = max(score, _pearson_r2(s.cast(pl.Float64).to_numpy(), y))
        scores[c] = {"metric": metric, "score": round(score, 4)}
    return scores, _leakage_findings(scores, target, metric, cfg)


def _leakage_findings(scores: dict[str, dict[str, Any]], target: str, metric: str, cfg: LeakageConfig
                      ) -> list[Finding]:
    """``target_leakage`` findings: every column at ``warn_threshold``, and the best column when it
    reaches ``dominant_auc`` / ``dominant_r2`` and leads the next one by ``dominant_margin``.

    The second rule exists because a leak is rarely a clean copy: a column that agrees with the target
    99% of the time scores an AUC of about 0.94 on an imbalanced target, under ``warn_threshold``,
    while the honest features trail far behind it.
    """
    ranked = sorted(scores.items(), key=lambda kv: -kv[1]["score"])
    dominant = cfg.dominant_auc if metric == "auc" else cfg.dominant_r2
    findings = []
    for i, (c, r) in enumerate(ranked):
        score, details = r["score"], {"metric": metric, "score": r["score"]}
        runner_up = ranked[1] if i == 0 and len(ranked) > 1 else None
        if score >= cfg.warn_threshold:
            sev = "error" if score >= cfg.threshold else "warning"
            threshold, why = cfg.threshold if sev == "error" else cfg.warn_threshold, ""
        elif runner_up is not None and score >= dominant and score - runner_up[1]["score"] >= cfg.dominant_margin:
            sev, threshold = "warning", dominant
            why = (f", far above the next column ('{runner_up[0]}', {metric.upper()} "
                   f"{runner_up[1]['score']:.3f}): possible target leakage")
            details.update(next_column=runner_up[0], next_score=runner_up[1]["score"])
        else:
            continue
        details["threshold"] = threshold
        findings.append(Finding(
            "target_leakage", c, sev, 1,
            f"column '{c}' alone predicts '{target}' with {metric.upper()} {score:.3f} out of fold{why}; "
            f"check it is known at prediction time, or drop it (clean rule drop_columns)", details))
    return findings


def correlated_pairs(sample: pl.DataFrame, columns: list[str], threshold: float) -> list[dict[str, Any]]:
    """Pairs of numeric columns with |Pearson r| >= threshold (missing values mean-filled)."""
    usable = [c for c in columns if sample.get_column(c).drop_nulls().n_unique() > 1]
    if len(usable) < 2:
        return []
    x = sample.select(pl.col(c).cast(pl.Float64).fill_null(pl.col(c).cast(pl.Float64).mean())
                      for c in usable).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x, rowvar=False)
    out = []
    for i in range(len(usable)):
        for j in range(i + 1, len(usable)):
            if np.isfinite(r[i, j]) and abs(r[i, j]) >= threshold:
                out.append({"a": usable[i], "b": usable[j], "r": round(float(r[i, j]), 4)})
    return sorted(out, key=lambda p: -abs(p["r"]))
