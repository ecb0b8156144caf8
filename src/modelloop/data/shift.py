"""Distribution shift between a reference table and a current one, per feature.

Used for train vs test splits by ``profile`` and, unchanged, for training data vs live traffic by
monitoring. Per column:

* **PSI** (population stability index) on bins taken from the *reference*: quantile bins for
  numbers and dates, the most frequent categories (+ "other") for categoricals, plus a bin for
  missing values when either side has some. Shares are Laplace-smoothed so empty bins stay finite.
  Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large.
* **KS** statistic and p-value (two-sample Kolmogorov–Smirnov) for numbers and dates.
* **chi²** p-value on the category counts, with the total variation distance as its effect size.
  Both are SciPy's (``ks_2samp``, ``chi2_contingency``), computed without importing ``scipy.stats`` for
  the usual cases (``_stat_tests``).
* **Datetime** features are compared through the parts a model reads from them (:func:`time_parts`:
  ``"{col}:month"``, ``"{col}:day"``, ``"{col}:dayofweek"``, ``"{col}:hour"``), each once the
  reference spans its cycle, never by their raw value or year, which only move forward: a later test
  split or a later window of traffic would always look shifted.
* **Text** columns are summarised per text by :func:`text_stats` — length in characters, number of
  words, share of CJK characters — and each summary is compared as a number (``"{col}:chars"``,
  ``"{col}:words"``, ``"{col}:cjk_share"``): longer or shorter messages, more empty ones, or another
  language mix are what a text model's traffic drifts by, and they need no model to measure.

A p-value alone flags negligible differences on large tables, so a column is ``drifted`` when its
PSI reaches ``psi_threshold``, or when the test is significant (``p < p_threshold``) *and* the effect
(KS statistic or total variation distance) reaches ``effect_threshold``.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
import polars as pl

from ..errors import ConfigError, DataError
from ._stat_tests import chi2_contingency_pvalue, ks_2samp
from ._tables import is_numeric, to_polars

__all__ = ["CATEGORICAL_KINDS", "NUMERIC_KINDS", "TEXT_KINDS", "compare_distributions", "compared_columns",
           "numeric_edges", "psi", "psi_noise_floor", "reference_bins", "text_stats", "time_parts"]

NUMERIC_KINDS = ("numeric", "datetime")
CATEGORICAL_KINDS = ("categorical", "boolean")
TEXT_KINDS = ("text",)
_CJK = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"  # kana, CJK ideographs, hangul
MAX_CATEGORIES = 30
KS_ROWS = 200_000  # each side is sampled to this many values for the KS test


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, alpha: float = 0.5) -> float:
    """Population stability index of two count vectors over the same bins (Laplace-smoothed)."""
    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    rs = (r + alpha) / (r.sum() + alpha * len(r))
    cs = (c + alpha) / (c.sum() + alpha * len(c))
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def reference_bins(n_reference: int, most: int = 10) -> int:
    """Quantile bins for a reference of ``n_reference`` values: about 5 reference values a bin, 3 to
    ``most``. Ten bins of a 28-row reference hold ~3 values each, and two samples of the same
    distribution then differ by a PSI of ~0.6: an alarm on every window."""
    return int(min(max(n_reference // 5, 3), most))


def psi_noise_floor(bins: int, n_reference: int, n_current: int, p_value: float) -> float:
    """The PSI that two samples of these sizes from one distribution exceed with probability about
    ``p_value``: PSI is close to ``(1/n_reference + 1/n_current)`` times a chi-squared variable with
    ``bins - 1`` degrees of freedom, whose ``1 - p_value`` quantile is taken (Wilson-Hilferty). Small
    on large samples (0.05 at 5,000 vs 500 rows in 10 bins), it keeps small ones from alarming."""
    from statistics import NormalDist

    if bins < 2 or n_reference < 1 or n_current < 1:
        return 0.0
    k, z = bins - 1, NormalDist().inv_cdf(1 - p_value)
    quantile = k * max(1 - 2 / (9 * k) + z * (2 / (9 * k)) ** 0.5, 0.0) ** 3
    return float(quantile * (1 / n_reference + 1 / n_current))


def numeric_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior cut points at the reference's quantiles (duplicates merged, so ties share a bin)."""
    return _edges(values[~np.isnan(values)], bins)


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``numeric_edges`` of ``values`` (no NaN), which it reorders: the quantiles are found in place."""
    if values.size == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], overwrite_input=True))


def _as_float(s: pl.Series) -> np.ndarray:
    if s.dtype.is_temporal():
        s = s.to_physical()
    return s.cast(pl.Float64).to_numpy()


def _sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return x if x.size <= n else np.random.default_rng(seed).choice(x, n, replace=False)


def _numeric(ref: pl.Series, cur: pl.Series, bins: int, seed: int) -> dict[str, Any]:
    r, c = _as_float(ref), _as_float(cur)
    rv, cv = r[~np.isnan(r)], c[~np.isnan(c)]
    missing = r.size - rv.size, c.size - cv.size
    del r, c
    # the KS samples are drawn first: the reference's quantiles are then found in place, reordering it
    samples = (_sample(rv, KS_ROWS, seed), _sample(cv, KS_ROWS, seed + 1)) if rv.size and cv.size else None
    edges = _edges(rv, bins)
    rc, cc = _bin_counts(rv, edges), _bin_counts(cv, edges)
    del rv, cv
    labels = [f"<= {edges[0]:.4g}"] if len(edges) else ["all"]
    labels += [f"({a:.4g}, {b:.4g}]" for a, b in itertools.pairwise(edges)]
    if len(edges):
        labels.append(f"> {edges[-1]:.4g}")
    rc, cc, labels = _with_missing(rc, cc, labels, *missing)
    ks, p = ks_2samp(*samples) if samples is not None else (None, None)
    return {"method": "psi+ks", "psi": psi(rc, cc), "ks": ks, "p_value": p, "effect": ks,
            "bins": _bins(labels, rc, cc), "_sizes": (int(rc.sum()), int(cc.sum()))}


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of ``values`` (no NaN) fall in each bin: bin ``i`` holds ``edges[i-1] <= v < edges[i]``
    (``np.searchsorted(edges, v, side="right")``), counted with one comparison per edge, a few times
    faster than a binary search per value."""
    at_least = np.array([np.count_nonzero(values >= e) for e in edges], dtype=np.int64)
    return -np.diff(np.concatenate(([values.size], at_least, [0])))


def _categorical(ref: pl.Series, cur: pl.Series) -> dict[str, Any]:
    r_counts = _category_counts(ref)  # the reference's top categories, and its counts
    cats = sorted(r_counts.get_column("value").head(MAX_CATEGORIES).to_list())
    idx = {v: i for i, v in enumerate(cats)}

    def counts(value_counts: pl.DataFrame) -> np.ndarray:
        out = np.zeros(len(cats) + 1, dtype=np.int64)
        for v, n in value_counts.iter_rows():
            out[idx.get(v, len(cats))] += n
        return out

    rc, cc = counts(r_counts), counts(_category_counts(cur))
    labels = [*cats, "(other)"]
    if rc[-1] == 0 and cc[-1] == 0:
        rc, cc, labels = rc[:-1], cc[:-1], labels[:-1]
    rc, cc, labels = _with_missing(rc, cc, labels, ref.null_count(), cur.null_count())
    table = np.vstack([rc, cc])
    table = table[:, table.sum(axis=0) > 0]
    p = None
    if table.shape[1] >= 2 and rc.sum() and cc.sum():
        p = chi2_contingency_pvalue(table)
    elif rc.sum() and cc.sum():
        p = 1.0
    tvd = 0.5 * float(np.abs(rc / max(rc.sum(), 1) - cc / max(cc.sum(), 1)).sum())
    return {"method": "psi+chi2", "psi": psi(rc, cc), "ks": None, "p_value": p, "effect": tvd,
            "bins": _bins(labels, rc, cc), "_sizes": (int(rc.sum()), int(cc.sum()))}


def _category_counts(s: pl.Series) -> pl.DataFrame:
    """``value`` (as text) and ``n`` of the values present in ``s``, most frequent first, ties by value.

    A Polars categorical is counted by its codes (the profile's split shift reads text columns so, a
    fraction of the memory of their text); any other column by its values as text."""
    if not isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
    counts = s.drop_nulls().value_counts(name="n").rename({s.name: "value"})
    return counts.with_columns(pl.col("value").cast(pl.String)).sort(["n", "value"], descending=[True, False])


def _with_missing(rc: np.ndarray, cc: np.ndarray, labels: list[str], r_miss: int, c_miss: int
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if r_miss or c_miss:
        return np.append(rc, r_miss), np.append(cc, c_miss), [*labels, "(missing)"]
    return rc, cc, labels


def _bins(labels: list[str], rc: np.ndarray, cc: np.ndarray) -> list[dict[str, Any]]:
    rt, ct = max(int(rc.sum()), 1), max(int(cc.sum()), 1)
    return [{"bin": lab, "reference": int(a) / rt, "current": int(b) / ct} for lab, a, b in zip(labels, rc, cc, strict=True)]


def compare_distributions(reference: Any, current: Any, columns_kinds: Mapping[str, str], bins: int = 10, *,
                          psi_threshold: float = 0.2, p_threshold: float = 0.01, effect_threshold: float = 0.1,
                          seed: int = 0, small_samples: bool = False) -> dict[str, dict[str, Any]]:
    """Per column ``{"method", "psi", "ks", "p_value", "drifted", "effect", "kind", "bins", "fired"}``
    (``fired``: the tests that found drift, of ``psi``, ``ks`` and ``chi2``).

    ``columns_kinds`` maps the columns to compare to their kind: numeric/datetime columns get PSI
    + KS, categorical/boolean ones PSI + chi², text columns the same as numbers on their
    :func:`text_stats` (one entry per statistic); identifier columns are skipped. ``bins`` is
    the number of reference quantile bins for numbers. Values are plain floats (JSON-ready).

    ``small_samples`` (monitoring: a training reference may be a few dozen rows, a window a hundred):
    numbers get ``reference_bins`` of the reference's size (at most ``bins``), and PSI fires only above
    ``max(psi_threshold, psi_noise_floor(...))`` at ``p_threshold``, the PSI same-distribution samples
    of those sizes reach by chance; the entry's ``psi_threshold`` says which applied.
    """
    if bins < 2:
        raise ConfigError(f"shift bins: must be >= 2, got {bins}")
    ref, cur = to_polars(reference, "reference"), to_polars(current, "current")
    out: dict[str, dict[str, Any]] = {}
    for col, kind in columns_kinds.items():
        for name, frame in (("reference", ref), ("current", cur)):
            if col not in frame.columns:
                raise DataError(f"shift: column '{col}' is missing from the {name} table; its columns: "
                                f"{', '.join(frame.columns[:40])}")
        verdict = {"psi_threshold": psi_threshold, "p_threshold": p_threshold, "effect_threshold": effect_threshold}
        n_bins = min(bins, reference_bins(ref.height - ref.get_column(col).null_count(), bins)) if small_samples \
            else bins
        if kind in TEXT_KINDS:
            r, c = text_stats(ref.get_column(col)), text_stats(cur.get_column(col))
            for stat in r.columns:
                out[f"{col}:{stat}"] = _verdict(_numeric(r.get_column(stat), c.get_column(stat), n_bins, seed),
                                                kind, small_samples=small_samples, **verdict)
            continue
        if kind in NUMERIC_KINDS and (is_numeric(ref.schema[col]) or ref.schema[col].is_temporal()):
            res = _numeric(ref.get_column(col), cur.get_column(col), n_bins, seed)
        elif kind in (*NUMERIC_KINDS, *CATEGORICAL_KINDS):
            res = _categorical(ref.get_column(col), cur.get_column(col))
        else:
            continue
        out[col] = _verdict(res, kind, small_samples=small_samples, **verdict)
    return out


def compared_columns(schema: Any) -> dict[str, str]:
    """Column -> kind of what drift compares for a model's input schema: its features, and its text
    column (a text model has no other input)."""
    kinds = {c: schema.columns[c] for c in schema.features()}
    if schema.text and schema.text in schema.columns:
        kinds.setdefault(schema.text, "text")
    return kinds


def text_stats(texts: pl.Series) -> pl.DataFrame:
    """Per text: ``chars`` (length), ``words`` (whitespace-separated runs) and ``cjk_share`` (share of
    its characters that are CJK); a missing text counts as empty."""
    s = texts.cast(pl.String).fill_null("")
    chars = s.str.len_chars().cast(pl.Float64)
    return pl.DataFrame({"chars": chars, "words": s.str.count_matches(r"\S+").cast(pl.Float64),
                         "cjk_share": s.str.count_matches(_CJK).cast(pl.Float64) / chars.clip(1.0)})


# The parts of a datetime feature that drift compares, in the order a model reads them
# (``models.tabular.DATETIME_PARTS``), each once the reference spans enough time to hold each of its
# values (days: 00:00 to 23:00, Monday to Sunday, the 1st to the 31st, January to December): a model
# trained on one quarter has seen three months, so every later month would be "drift". The parts a model
# reads that have no cycle (year, epoch) only move forward and are never compared.
_FULL_CYCLE_DAYS = {"month": 334.0, "day": 30.0, "dayofweek": 6.0, "hour": 23 / 24}


def time_parts(reference: Any, current: Any, schema: Any) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """The parts of each datetime feature of ``schema`` that drift can fairly compare, as a model sees them.

    ``reference`` and ``current`` are pandas or Polars frames holding those columns. Returns their parts
    (Float64 columns ``{col}:{part}``, the values ``models.tabular.prepare_features`` derives, computed
    here with Polars so that the profile loads neither pandas nor the model code for them) and, per
    datetime column, where both sides lie in time: ``from`` and ``to`` of ``current``, ``training_from``
    and ``training_to`` of ``reference`` (ISO text, None when empty) and the parts ``compared``.
    Monitoring compares training rows with traffic by them, ``modelloop profile`` the train and test split.
    """
    times = [c for c in schema.features() if schema.columns[c] == "datetime"]
    ref_parts: dict[str, pl.Series] = {}
    cur_parts: dict[str, pl.Series] = {}
    described: dict[str, Any] = {}
    for c in times:
        fmt = schema.datetime_format(c)
        r, k = _timestamps(_column(reference, c), fmt), _timestamps(_column(current, c), fmt)
        low: Any = r.min()  # datetimes, None when the column is empty
        high: Any = r.max()
        span_days = (high - low).total_seconds() / 86400 if low is not None else 0.0
        parts = [p for p, days in _FULL_CYCLE_DAYS.items() if span_days >= days]
        for p in parts:
            ref_parts[f"{c}:{p}"], cur_parts[f"{c}:{p}"] = _time_part(r, p), _time_part(k, p)
        described[c] = {"from": _iso(k.min()), "to": _iso(k.max()), "training_from": _iso(low),
                        "training_to": _iso(high), "compared": [f"{c}:{p}" for p in parts]}
    return pl.DataFrame(ref_parts), pl.DataFrame(cur_parts), described


def _column(frame: Any, column: str) -> Any:
    return frame.get_column(column) if isinstance(frame, pl.DataFrame) else frame[column]


def _timestamps(values: Any, fmt: str | None) -> pl.Series:
    """A datetime column (Polars or pandas) as naive UTC datetimes, read as training reads it: a date or
    datetime as it is (an aware one in UTC), text by ``data.dates``' rules with the column's format."""
    if not (isinstance(values, pl.Series) and values.dtype in (pl.Date, pl.Datetime)):
        import pandas as pd  # text (or pandas) only: a Parquet version's datetime columns need neither

        from .dates import parse_datetimes

        s = values.to_pandas() if isinstance(values, pl.Series) else values
        if not pd.api.types.is_datetime64_any_dtype(s):
            s = parse_datetimes(s, fmt)
        values = pl.from_pandas(s)
    if values.dtype == pl.Date:
        return values.cast(pl.Datetime("us"))
    if getattr(values.dtype, "time_zone", None) is not None:
        return values.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return values


def _time_part(s: pl.Series, part: str) -> pl.Series:
    """``part`` of naive UTC datetimes as pandas' ``.dt`` names it (``dayofweek``: Monday is 0)."""
    value = s.dt.weekday() - 1 if part == "dayofweek" else getattr(s.dt, part)()
    return value.cast(pl.Float64)


def _iso(t: Any) -> str | None:
    return None if t is None else t.isoformat()


def _verdict(res: dict[str, Any], kind: str, *, psi_threshold: float, p_threshold: float,
             effect_threshold: float, small_samples: bool = False) -> dict[str, Any]:
    """``drifted``, and ``fired``: the tests whose thresholds were crossed (``psi``, then ``ks`` or
    ``chi2``), so a message can name what decided rather than quote a PSI under its threshold.
    ``small_samples``: the PSI threshold is raised to the noise floor of the two samples' sizes."""
    p, effect = res["p_value"], res["effect"]
    n_ref, n_cur = res.pop("_sizes")
    if small_samples:
        psi_threshold = max(psi_threshold, psi_noise_floor(len(res["bins"]), n_ref, n_cur, p_threshold))
    res["fired"] = [name for name, crossed in (
        ("psi", res["psi"] >= psi_threshold),
        (res["method"].split("+")[1], p is not None and p < p_threshold and effect is not None
         and effect >= effect_threshold)) if crossed]
    res["drifted"] = bool(res["fired"])
    res["kind"] = kind
    keep = {k: res[k] for k in ("method", "psi", "ks", "p_value", "drifted", "effect", "kind", "bins", "fired")}
    return {**keep, "psi_threshold": psi_threshold} if small_samples else keep
