"""The profile's checks of an interactions table (``Family.profile_findings``): what makes recommenders
learn less than the row count suggests. Merged into the version's quality report like every finding, so
``quality.gate.forbid`` / ``fail_on_severity`` act on them.

* ``duplicate_interactions``: a (user, item) pair more than once (ratings: the last one is learned;
  implicit feedback: the count is the pair's confidence);
* ``single_interaction_users`` / ``single_interaction_items``: ids seen once, which no collaborative
  model learns (a share above 30 % is a warning);
* ``rating_outliers``: ratings far off the scale the others use (the range of the values at least 1 %
  of the ratings take, widened by its own span on each side, so a rare 1 among mostly 2-5 stars is
  kept): a 50 among 1-5 stars, a -1;
* ``popularity_skew``: the share of interactions on the most popular 10 % of items and the Gini
  coefficient of item counts (above 0.5 of interactions: popularity alone ranks well, and metrics reward
  it; the report's coverage and novelty say how much a model leans on it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["interaction_findings"]

_SINGLE_WARN = 0.3
_SKEW_WARN = 0.5


def _finding(kind: str, column: str, severity: str, count: int, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "column": column, "severity": severity, "count": int(count), "message": message,
            "details": details}


def interaction_findings(cfg: Any, frame: Any) -> list[dict[str, Any]]:
    """Findings of the interactions ``frame`` (a Polars LazyFrame of the version's columns)."""
    from .data import id_text, interaction_columns

    user, item, rating, _ = interaction_columns(cfg)
    df = frame.select([c for c in (user, item, rating) if c]).collect().to_pandas()
    df[user], df[item] = id_text(df[user]), id_text(df[item])
    out: list[dict[str, Any]] = []
    repeated = int(df.duplicated([user, item]).sum())
    if repeated:
        what = "the last rating of a pair is learned" if rating else "a pair's count is its confidence"
        out.append(_finding("duplicate_interactions", item, "warning" if rating else "info", repeated,
                            f"{repeated} interactions repeat a (user, item) pair already seen; {what}"))
    for key, column in (("users", user), ("items", item)):
        counts = df[column].value_counts()
        once = int((counts == 1).sum())
        if once:
            share = once / len(counts)
            out.append(_finding(f"single_interaction_{key}", column, "warning" if share > _SINGLE_WARN else "info",
                                once, f"{once} of {len(counts)} {key} ({share:.0%}) have one interaction: no "
                                      "collaborative model learns them", share=round(share, 4)))
    if rating:
        out += _rating_outliers(df[rating].to_numpy(dtype=np.float64), rating)
    out += _skew(df[item].value_counts().to_numpy(), item)
    return out


def _rating_outliers(values: np.ndarray, column: str) -> list[dict[str, Any]]:
    values = values[np.isfinite(values)]
    if not len(values):
        return []
    distinct, counts = np.unique(values, return_counts=True)
    common = distinct[counts >= 0.01 * len(values)]
    low, high = float(common.min()), float(common.max())
    span = max(high - low, 1.0)
    off = (values < low - span) | (values > high + span)
    if not off.any():
        return []
    return [_finding("rating_outliers", column, "warning", int(off.sum()),
                     f"{int(off.sum())} ratings lie off the {low:g}-{high:g} scale the others use, e.g. "
                     f"{values[off][0]:g}", scale=[low, high])]


def _skew(counts: np.ndarray, column: str) -> list[dict[str, Any]]:
    if len(counts) < 2:
        return []
    ordered = np.sort(counts)[::-1]
    top = max(1, int(np.ceil(0.1 * len(ordered))))
    share = float(ordered[:top].sum() / ordered.sum())
    ascending = ordered[::-1].astype(np.float64)
    n = len(ascending)
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ ascending / (n * ascending.sum()))
    return [_finding("popularity_skew", column, "warning" if share > _SKEW_WARN else "info", top,
                     f"the {top} most popular items ({top / n:.0%} of the catalog) take {share:.0%} of the "
                     f"interactions (Gini {gini:.2f})", top_share=round(share, 4), gini=round(gini, 4))]
