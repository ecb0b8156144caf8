"""The log's aggregates behind the Serving and Monitoring pages, on SQLite and PostgreSQL: hour and day keys,
counts per version, percentiles exact to their bucket, the catalog's rollups (``prediction_hours``,
``label_days``) equal to the log's rows before and after more rows and labels arrive (a label before its
prediction too), the schema 4 -> 5 migration that fills them, and the bounded reads of labeled and daily
rows."""

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


def _flat(found, path: str = "") -> dict:
    """A nested dict as ``{"a/b/c": leaf}`` (``pytest.approx`` compares flat dicts, within float sums' rounding)."""
    if isinstance(found, dict):
        return {k: v for key, inner in found.items() for k, v in _flat(inner, f"{path}/{key}").items()}
    if isinstance(found, list):
        return {f"{path}/{i}": v for i, v in enumerate(found)}
    return {path: found}


def _same_as_the_rows(cat, since: dt.datetime) -> None:
    """The catalog's rollups hold what the log's rows add up to (labels: joined to their predictions)."""
    import sqlalchemy as sa

    from modelloop.catalog import feedback, predictions
    from modelloop.dashboard.queries import hourly, label_coverage, labels_per_version, rolled_hours

    for name in ("toy", "other"):
        assert _flat(rolled_hours(cat, name, since)) == pytest.approx(_flat(hourly(cat, name, since)))
    with cat.tx() as c:
        joined = c.execute(sa.select(predictions.c.version, predictions.c.at).select_from(
            feedback.join(predictions, predictions.c.request_id == feedback.c.request_id))
            .where(predictions.c.name == "toy")).all()
    assert labels_per_version(cat, "toy") == dict(Counter(v for v, _ in joined))
    assert label_coverage(cat, "toy", since) == dict(Counter(at.strftime("%Y-%m-%d") for _, at in joined
                                                             if at >= since))


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
    assert _flat(first) == pytest.approx(_flat(summarize(hours, "hour")))
    _same_as_the_rows(cat, since)
    assert labels_per_version(cat, "toy") == dict(Counter(r["version"] for i, r in enumerate(rows) if i % 5 == 0))

    # after the first view: more rows in an hour already counted and in a new one, a request slower than the
    # last edge, a label for an earlier prediction, and a label that came before its prediction was logged
    later = now + dt.timedelta(hours=2)
    cat.add_feedback("early", 0)
    cat.add_predictions([{"request_id": "late", "name": "toy", "version": 1, "at": now, "inputs": {},
                          "output": {}, "latency_ms": 1.0},
                         {"request_id": "early", "name": "toy", "version": 2, "at": later, "inputs": {},
                          "output": {}, "latency_ms": 7000.0}])
    cat.add_feedback("q-1", 1)
    second = rollup.traffic(cat, "toy", since, "hour", later)["buckets"]
    assert second[now.strftime("%Y-%m-%d %H")]["requests"] == first["buckets"][now.strftime("%Y-%m-%d %H")]["requests"] + 1
    assert second[later.strftime("%Y-%m-%d %H")]["p99_ms"] == 7000.0
    _same_as_the_rows(cat, since)
    assert labels_per_version(cat, "toy") == dict(Counter(
        [r["version"] for i, r in enumerate(rows) if i % 5 == 0] + [1 + (1 % 3 == 0), 2]))
    coverage = label_coverage(cat, "toy", since)
    assert sum(coverage.values()) == len(range(0, 300, 5)) + 2
    labeled = latest_labeled(cat, "toy", 10)
    assert len(labeled) == 10 and set(labeled[0]) == {"version", "output", "label"}
    # a whole day of the log (just after midnight today holds only a few rows: the test failed at 00:07)
    yesterday = (now - dt.timedelta(days=1)).date()
    day = day_requests(cat, "toy", yesterday, 5)
    assert len(day) == 5 and day[-1]["at"] >= day[0]["at"] and all(r["name"] == "toy" for r in day)
    assert {r["at"].date() for r in day} == {yesterday}
    cat.close()


def test_schema_4_catalog_gets_its_log_rollups_from_the_rows(store_url) -> None:
    """A catalog made before the rollups opens with them filled from its log, then kept up by new rows."""
    import sqlalchemy as sa

    from modelloop.catalog import SCHEMA_VERSION, Catalog, label_days, meta, prediction_hours

    cat = Catalog(store_url)
    now, _ = _log(cat)
    since = (now - dt.timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    with cat.tx() as c:                           # back to schema 4: no rollups (made by a writer without them)
        for table in ("prediction_hours", "label_days", "drift_days"):
            c.execute(sa.text(f"DROP TABLE {table}"))
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value="4"))
    cat.close()
    cat = Catalog(store_url)
    with cat.tx() as c:
        assert c.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() == \
            str(SCHEMA_VERSION)
        assert c.execute(sa.select(sa.func.sum(prediction_hours.c.requests))).scalar() == 301
        assert c.execute(sa.select(sa.func.sum(label_days.c.labels))).scalar() == 60
    _same_as_the_rows(cat, since)
    cat.add_predictions([{"request_id": "after", "name": "toy", "version": 1, "at": now, "inputs": {},
                          "output": {}, "latency_ms": 2.0}])
    cat.add_feedback_many([{"request_id": "after", "label": 1, "source": "file"}])
    _same_as_the_rows(cat, since)
    cat.close()
