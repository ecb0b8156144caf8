"""The Serving and Monitoring pages' reads of the prediction log, from the catalog's rollups.

A page must answer in well under 300 ms on a log of a million predictions, the first time after a start
too, so no page reads the log's rows to draw a chart. The catalog keeps two rollups in the same
transaction as the rows they count (schema 5, :mod:`modelloop.catalog`): ``prediction_hours``, requests,
latency sum and maximum and the requests under each of :data:`LATENCY_EDGES_MS` per hour and model
version, and ``label_days``, labels per day of the labelled prediction and version. Latency percentiles
are read from those counts (as Prometheus reads its histograms), exact to the bucket; since counts add up,
days are sums of hours. A month is ~720 rows per version, where the log's own ``GROUP BY`` (:func:`hourly`,
kept as the reference the rollup must equal) reads a million (``benchmarks/dashboard.py`` times both).
The rows that do reach Python are bounded: the latest labeled predictions for live metrics, and a day's
latest requests for its drift.

Time buckets are text keys, ``YYYY-MM-DD HH`` by hour or ``YYYY-MM-DD`` by day
(:func:`modelloop.catalog.time_bucket` in SQL, :func:`modelloop.catalog.hour_key` in Python).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..catalog import LATENCY_EDGES_MS, Catalog, feedback, label_days, prediction_hours, predictions, time_bucket

__all__ = ["LATENCY_EDGES_MS", "RANGES", "TrafficRollup", "buckets", "day_requests", "hourly", "label_coverage",
           "labels_per_version", "latest_labeled", "newest_label", "percentile", "rolled_hours", "summarize"]

# the Serving page's windows: name -> (hours back from now, bucket)
RANGES = {"24h": (24, "hour"), "7d": (7 * 24, "day"), "30d": (30 * 24, "day")}
_SECONDS = {"hour": 3600, "day": 86400}


def buckets(now: dt.datetime, hours: int, by: str) -> list[str]:
    """Every bucket key of the window ending at ``now``, oldest first (empty buckets included)."""
    step = dt.timedelta(seconds=_SECONDS[by])
    start = now - dt.timedelta(hours=hours)
    start = start.replace(minute=0, second=0, microsecond=0)
    if by == "day":
        start = start.replace(hour=0)
    keys = []
    while start <= now:
        keys.append(start.strftime("%Y-%m-%d %H" if by == "hour" else "%Y-%m-%d"))
        start += step
    return keys


def percentile(counts: list[int], total: int, q: float, top: float) -> float | None:
    """The ``q`` quantile of a latency histogram (cumulative ``counts`` under ``LATENCY_EDGES_MS``),
    interpolated inside its bucket; ``top`` (the slowest request) above the last edge."""
    if total <= 0:
        return None
    want, low = q * total, 0.0
    below = 0
    for edge, cum in zip(LATENCY_EDGES_MS, counts, strict=True):
        if cum >= want:
            inside = cum - below
            share = (want - below) / inside if inside else 1.0
            return min(low + (edge - low) * share, top)
        low, below = float(edge), cum
    return top


def hourly(cat: Catalog, name: str, start: dt.datetime, end: dt.datetime | None = None) -> dict[str, dict]:
    """``{hour: {version: [requests, latency sum, latency max, *requests under each edge]}}`` of the log's
    rows in ``[start, end)``: one ``GROUP BY`` over them, the reference :func:`rolled_hours` equals (the
    pages read the rollup)."""
    key = time_bucket(predictions.c.at, cat.engine.dialect.name, "hour").label("hour")
    lat = predictions.c.latency_ms
    cums = [sa.func.sum(sa.case((lat <= e, 1), else_=0)) for e in LATENCY_EDGES_MS]
    where = [predictions.c.name == name, predictions.c.at >= start]
    if end is not None:
        where.append(predictions.c.at < end)
    q = (sa.select(key, predictions.c.version, sa.func.count(), sa.func.sum(lat), sa.func.max(lat), *cums)
         .where(*where).group_by(key, predictions.c.version))
    out: dict[str, dict[int, list[float]]] = {}
    with cat.tx() as c:
        for hour, version, *figures in c.execute(q):
            out.setdefault(hour, {})[version] = [float(v or 0) for v in figures]
    return out


def rolled_hours(cat: Catalog, name: str, start: dt.datetime, end: dt.datetime | None = None) -> dict[str, dict]:
    """What :func:`hourly` answers for whole hours from ``start``'s (to ``end``'s, excluded), read from the
    catalog's ``prediction_hours``."""
    t = prediction_hours
    where = [t.c.name == name, t.c.hour >= start.strftime("%Y-%m-%d %H")]
    if end is not None:
        where.append(t.c.hour < end.strftime("%Y-%m-%d %H"))
    q = sa.select(t.c.hour, t.c.version, t.c.requests, t.c.latency_sum, t.c.latency_max,
                  *(t.c[f"le_{e}"] for e in LATENCY_EDGES_MS)).where(*where)
    out: dict[str, dict[int, list[float]]] = {}
    with cat.tx() as c:
        for hour, version, *figures in c.execute(q):
            out.setdefault(hour, {})[version] = [float(v) for v in figures]
    return out


def summarize(hours: dict[str, dict[int, list[float]]], by: str) -> dict[str, Any]:
    """Hourly figures added up by hour or day (counts under the edges add up, so percentiles stay exact
    to the bucket): per bucket requests, requests/s, mean and p50/p95/p99 latency; requests per version."""
    merged: dict[str, list[float]] = {}
    by_version: dict[int, dict[str, int]] = {}
    for hour, versions in hours.items():
        bucket = hour if by == "hour" else hour[:10]
        for version, (n, total, top, *cum) in versions.items():
            acc = merged.setdefault(bucket, [0.0, 0.0, 0.0] + [0.0] * len(cum))
            acc[0] += n
            acc[1] += total
            acc[2] = max(acc[2], top)
            for i, c in enumerate(cum):
                acc[3 + i] += c
            per = by_version.setdefault(version, {})
            per[bucket] = per.get(bucket, 0) + int(n)
    out: dict[str, Any] = {}
    for bucket, (n, total, top, *cum) in merged.items():
        counts = [int(c) for c in cum]
        out[bucket] = {"requests": int(n), "per_second": n / _SECONDS[by], "mean_ms": total / n if n else None,
                       **{f"p{int(q * 100)}_ms": percentile(counts, int(n), q, top) for q in (0.5, 0.95, 0.99)}}
    return {"buckets": out, "versions": by_version}


class TrafficRollup:
    """The Serving figures of a window, from the catalog's hourly rollup (kept for the pages' callers: it
    holds nothing now, every read is a few hundred rows of ``prediction_hours``)."""

    def hours(self, cat: Catalog, name: str, since: dt.datetime, now: dt.datetime) -> dict[str, dict]:
        """Hourly figures from ``since`` (an hour's start) to ``now``."""
        return rolled_hours(cat, name, since)

    def traffic(self, cat: Catalog, name: str, since: dt.datetime, by: str, now: dt.datetime) -> dict[str, Any]:
        return summarize(self.hours(cat, name, since, now), by)


def label_coverage(cat: Catalog, name: str, since: dt.datetime) -> dict[str, int]:
    """Labels that came back per day of the prediction they label, from ``since``'s day (``label_days``)."""
    t = label_days
    q = (sa.select(t.c.day, sa.func.sum(t.c.labels)).where(t.c.name == name, t.c.day >= since.strftime("%Y-%m-%d"))
         .group_by(t.c.day))
    with cat.tx() as c:
        return {d: int(n) for d, n in c.execute(q)}


def labels_per_version(cat: Catalog, name: str) -> dict[int, int]:
    """Labels per model version, of every day (``label_days``)."""
    t = label_days
    q = sa.select(t.c.version, sa.func.sum(t.c.labels)).where(t.c.name == name).group_by(t.c.version)
    with cat.tx() as c:
        return {int(v): int(n) for v, n in c.execute(q)}


def _joined() -> Any:
    return (sa.select(predictions, feedback.c.label, feedback.c.at.label("feedback_at"))
            .select_from(predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id)))


def newest_label(cat: Catalog) -> int:
    """The newest feedback row's id: it changes exactly when a label arrives, so it keys a cache of live
    figures."""
    with cat.tx() as c:
        return int(c.execute(sa.select(sa.func.max(feedback.c.id))).scalar() or 0)


def latest_labeled(cat: Catalog, name: str, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` labeled predictions (oldest first), with what live metrics read of them
    (version, output, label): not their inputs, the largest part of a logged row."""
    q = (sa.select(predictions.c.version, predictions.c.output, feedback.c.label)
         .select_from(feedback.join(predictions, predictions.c.request_id == feedback.c.request_id))
         .where(predictions.c.name == name).order_by(feedback.c.id.desc()).limit(limit))
    with cat.tx() as c:
        return [dict(r._mapping) for r in c.execute(q)][::-1]


def day_requests(cat: Catalog, name: str, day: dt.date, limit: int) -> list[dict[str, Any]]:
    """A day's latest ``limit`` predictions with their feedback (oldest first), for that day's drift."""
    start = dt.datetime.combine(day, dt.time())
    q = (_joined().where(predictions.c.name == name, predictions.c.at >= start,
                         predictions.c.at < start + dt.timedelta(days=1))
         .order_by(predictions.c.at.desc()).limit(limit))
    with cat.tx() as c:
        return [dict(r._mapping) for r in c.execute(q)][::-1]
