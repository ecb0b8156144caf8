"""Demand prediction: a job's duration and peak memory from the finished jobs like it.

"Like it" is the same command verb (``train``, ``retrain``...), of the same project when that has
history, else of any project. With three or more such jobs of known, differing dataset sizes the
figure is a least-squares line of log(value) on log(rows) (run time grows as a power of the data);
otherwise it is their median. Every call reads the catalog's finished jobs, so each job that ends
corrects the next prediction.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["predict_demand"]


def _fit(points: Sequence[tuple[float | None, float]], rows: float | None) -> float | None:
    values = [v for _, v in points if v is not None and v > 0]
    if not values:
        return None
    sized = [(math.log(r), math.log(v)) for r, v in points if r and r > 0 and v and v > 0]
    if rows and rows > 0 and len(sized) >= 3 and len({x for x, _ in sized}) >= 2:
        mx = statistics.fmean(x for x, _ in sized)
        my = statistics.fmean(y for _, y in sized)
        sxx = sum((x - mx) ** 2 for x, _ in sized)
        slope = sum((x - mx) * (y - my) for x, y in sized) / sxx
        return math.exp(my + slope * (math.log(rows) - mx))
    return float(statistics.median(values))


def predict_demand(features: dict[str, Any], project: str, finished: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{seconds, peak_memory, based_on}`` for a job with ``features`` from ``finished`` job rows
    (succeeded ones with measured ``usage``); None figures when there is no history yet."""
    same = [j for j in finished if j.get("usage") and j["state"] == "succeeded"
            and (j.get("features") or {}).get("verb") == features.get("verb")]
    mine = [j for j in same if j["project"] == project]
    pool = mine or same
    rows = features.get("rows")
    seconds = _fit([((j["features"] or {}).get("rows"), j["usage"].get("seconds")) for j in pool], rows)
    memory = _fit([((j["features"] or {}).get("rows"), j["usage"].get("peak_memory")) for j in pool], rows)
    return {"seconds": None if seconds is None else round(seconds, 2),
            "peak_memory": None if memory is None else int(memory), "based_on": len(pool)}
