"""The log's aggregates behind the Serving and Monitoring pages, on SQLite and PostgreSQL: hour and day keys,
counts per version, percentiles exact to their bucket, the in-memory rollup of finished hours, labels
counted incrementally, coverage per day, and the bounded reads of labeled and daily rows."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pytest


def _log(cat) -> tuple[dt.datetime, list[dict]]:
    from modelloop.catalog import utcnow

    now = utcnow()
    rows = []
    for i in range(300):                     # 3 days back to now, every 15 minutes, two versions
        at = now - dt.timedelta(minutes=15 * i)
        rows.append({"request_id": f"q-{i}", "name": "toy", "version": 1 + (i % 3 == 0), "at": at,
                     "inputs": {"x": i}, "output": {"label": i % 2}, "latency_ms": float(1 + i % 40)})
    rows.append({"request_id": "other-model", "name": "other", "version": 1, "at": now, "inputs": {},
                 "output": {}, "latency_ms": 9999.0})
    cat.add_predictions(rows)
    cat.add_feedback_many([{"request_id": f"q-{i}", "label": i % 2, "source": "file"} for i in range(0, 300, 5)])
    return now, [r for r in rows if r["name"] == "toy"]


def test_ui_log_aggregates_agree_with_the_rows(store_url) -> None:
    from modelloop.catalog import Catalog
    from modelloop.dashboard.queries import (LATENCY_EDGES_MS, TrafficRollup, day_requests, hourly, label_coverage,
                                             labels_per_version, latest_labeled, summarize)

    cat = Catalog(store_url)
    now, rows = _log(cat)
    since = (now - dt.timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    hours = hourly(cat, "toy", since)
    assert Counter({h: int(sum(v[0] for v in versions.values())) for h, versions in hours.items()}) == \
        Counter(r["at"].strftime("%Y-%m-%d %H") for r in rows)
    by_day = summarize(hours, "day")
    assert {d: b["requests"] for d, b in by_day["buckets"].items()} == \
        dict(Counter(r["at"].strftime("%Y-%m-%d") for r in rows))
    assert sum(by_day["versions"][2].values()) == sum(r["version"] == 2 for r in rows)
    everything = summarize(hours, "day")["buckets"]
    for day, b in everything.items():                  # each percentile inside the true one's bucket
        lat = np.array([r["latency_ms"] for r in rows if r["at"].strftime("%Y-%m-%d") == day])
        for q in (50, 95, 99):
            true = np.percentile(lat, q, method="inverted_cdf")
            edge = next(e for e in LATENCY_EDGES_MS if true <= e)
            lower = max([e for e in LATENCY_EDGES_MS if e < edge], default=0)
            assert lower <= b[f"p{q}_ms"] <= edge, (day, q, true, b[f"p{q}_ms"])
        assert b["mean_ms"] == pytest.approx(lat.mean())
    rollup = TrafficRollup()
    first = rollup.traffic(cat, "toy", since, "hour", now)
    assert first == summarize(hours, "hour")
    cat.add_predictions([{"request_id": "late", "name": "toy", "version": 1, "at": now, "inputs": {},
                          "output": {}, "latency_ms": 1.0}])
    second = rollup.traffic(cat, "toy", since, "hour", now)["buckets"]
    assert second[now.strftime("%Y-%m-%d %H")]["requests"] == first["buckets"][now.strftime("%Y-%m-%d %H")]["requests"] + 1

    top, counts = labels_per_version(cat, "toy")
    assert counts == dict(Counter(r["version"] for i, r in enumerate(rows) if i % 5 == 0))
    cat.add_feedback("q-1", 1)
    newer, more = labels_per_version(cat, "toy", after=top)
    assert newer > top and more == {2 if 1 % 3 == 0 else 1: 1}
    coverage = label_coverage(cat, "toy", since)
    assert sum(coverage.values()) == len(range(0, 300, 5)) + 1
    labeled = latest_labeled(cat, "toy", 10)
    assert len(labeled) == 10 and set(labeled[0]) == {"version", "output", "label"}
    today = day_requests(cat, "toy", now.date(), 5)
    assert len(today) == 5 and today[-1]["at"] >= today[0]["at"] and all(r["name"] == "toy" for r in today)
    cat.close()
