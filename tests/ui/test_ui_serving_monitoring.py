"""The Serving and Monitoring pages over three days of logged traffic (tests/ui/traffic.py): figures the
SQL aggregates must agree with a plain count of the log, drift that fires on the shifted day only, labels
behind the live metrics, the server's own error and batch figures under ``serve --ui``; zh-CN; escaping."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter

import numpy as np
import pytest
from traffic import LABELLED_YESTERDAY, PER_DAY
from traffic import monitoring_settled as _settled


@pytest.fixture(scope="module")
def client(ui_project, ui_traffic):
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app

    with TestClient(create_app(ui_project, keys=[])) as c:
        yield c


def _table(page: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", td).strip() for td in re.findall(r"<td>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]



def test_ui_serving_counts_and_latency_agree_with_the_log(client, ui_project, ui_traffic) -> None:
    log = ui_project.workspace.catalog.recent_predictions("toy", limit=100_000)
    per_day = Counter(r["at"].strftime("%Y-%m-%d") for r in log)
    page = client.get("/serving?range=7d")
    assert page.status_code == 200
    rows = {r[0]: r for r in _table(page.text, "traffic")}
    assert {day: int(r[1]) for day, r in rows.items()} == dict(per_day)
    today = ui_traffic["now"].strftime("%Y-%m-%d")
    latencies = np.array([r["latency_ms"] for r in log if r["at"].strftime("%Y-%m-%d") == today])
    p50, p99 = (float(rows[today][i].removesuffix(" ms")) for i in (4, 6))
    # exact to the histogram's bucket: the true p50 is 3 ms (2-5 ms bucket), p99 300 ms (200-500 ms)
    assert np.percentile(latencies, 50) == 3.0 and 2 < p50 <= 5
    assert np.percentile(latencies, 99) == 300.0 and 200 < p99 <= 500
    mean = float(rows[today][3].removesuffix(" ms"))
    assert mean == pytest.approx(latencies.mean(), rel=1e-2)
    # one line per model version that answered in the window, a point per bucket, nothing fetched
    chart = re.search(r'<figure id="chart-requests">(.*?)</figure>', page.text, re.S).group(1)
    assert f">v{ui_traffic['production']}<" in chart and f">v{ui_traffic['other']}<" in chart
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/refresh.js" defer>']
    from modelloop.catalog import utcnow

    for _ in range(2):          # by hour, from the hour 24 h before the request began (its hour, not the log's:
        asked = utcnow()        # a session crossing an hour since the traffic was logged failed here)
        hourly = client.get("/serving")
        if utcnow().hour == asked.hour:
            break
    start = (asked - dt.timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    assert hourly.status_code == 200
    assert sum(int(r[1]) for r in _table(hourly.text, "traffic")) == sum(1 for r in log if r["at"] >= start)
    assert "modelloop serve --ui" in hourly.text                      # errors need the server's metrics
    # the catalog's hourly rollup is kept up with the log: a new prediction shows at once
    ui_project.workspace.catalog.add_predictions([{"request_id": "traffic-late", "name": "toy", "version": 1,
                                                   "at": utcnow(), "inputs": {}, "output": {}, "latency_ms": 1.0}])
    again = {r[0]: int(r[1]) for r in _table(client.get("/serving?range=7d").text, "traffic")}
    assert again[utcnow().strftime("%Y-%m-%d")] == per_day[utcnow().strftime("%Y-%m-%d")] + 1
    bad = client.get("/serving?range=1y")
    assert bad.status_code == 400 and "&#39;1y&#39; is not one of: 24h, 7d, 30d" in bad.text
    assert "每秒请求数" in client.get("/serving?lang=zh-CN").text


def test_ui_monitoring_drift_by_day_alerts_labels_and_coverage(client, ui_project, ui_traffic) -> None:
    page = _settled(client, "/monitoring")
    assert page.status_code == 200
    days = [(ui_traffic["now"].date() - dt.timedelta(days=d)).isoformat() for d in (2, 1, 0)]
    alerts = _table(page.text, "alerts")
    fired = {(a[0], a[1]) for a in alerts}
    assert (days[1], "amount") in fired                               # the day amount was 20x
    assert (days[0], "amount") not in fired and (days[2], "amount") not in fired
    # the heat map has a cell per feature and day, drawn as SVG with the figure in its title
    heat = re.search(r'<figure id="chart-drift">(.*?)</figure>', page.text, re.S).group(1)
    assert heat.count('class="fired"') >= 1 and "amount ·" in heat and "<script" not in heat
    coverage = {r[0]: r for r in _table(page.text, "coverage")}
    assert coverage[days[1]][1:] == [str(PER_DAY), str(LABELLED_YESTERDAY), "80.0%"]
    assert coverage[days[0]][2] == "0" and coverage[days[2]][2] == "1"          # today: req-ui-1
    # live metrics: the monitor's own figures of the latest 100 labels, with the count behind them
    from modelloop.feedback.monitor import live_metrics

    ws, prod = ui_project.workspace, str(ui_traffic["production"])
    expected = live_metrics(ws, ws.catalog.labeled_predictions("toy"), [100])[prod]["last_100"]
    live = {(r[0], r[1]): r for r in _table(page.text, "live")}
    last_100 = live[(f"toy:{prod}", "last_100")]
    assert last_100[2] == "100" and f"accuracy = {expected['accuracy']:.4g}" in last_100[3]
    assert 0.6 < expected["accuracy"] < 0.9                           # a quarter of the labels disagree
    assert live[(f"toy:{prod}", "all")][2] == live[(f"toy:{prod}", "all")][4] == str(LABELLED_YESTERDAY + 1)
    # a label that arrives later is added to the counts (the catalog's label_days, kept up as labels arrive)
    ws.catalog.add_feedback("traffic-0-3", 1, source="api")
    again = {(r[0], r[1]): r for r in _table(client.get("/monitoring").text, "live")}
    assert again[(f"toy:{prod}", "all")][4] == str(LABELLED_YESTERDAY + 2)
    overview = client.get("/?lang=en").text
    stage = re.search(r'<li class="stage (\w+)" id="stage-monitoring">(.*?)</li>', overview, re.S)
    assert stage.group(1) == "bad" and f"{LABELLED_YESTERDAY + 2} labels" in stage.group(2)
    assert f"Alerts fired: <b>{len(alerts)}</b>" in stage.group(2) and "amount" in stage.group(2)
    zh = client.get("/monitoring?lang=zh-CN").text
    assert "已触发的告警" in zh and "每日标签覆盖率" in zh


def test_ui_monitoring_after_a_restart_reads_finished_days_from_the_catalog(client, ui_project, ui_traffic) -> None:
    """A day's drift is kept in the catalog with the requests it covered, the live metrics with the newest
    label they saw: a fresh app (a restart, another worker) draws the same heat map and live table without
    computing them again, and a day whose requests changed is computed again."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days, utcnow
    from modelloop.dashboard import create_app
    from modelloop.dashboard.queries import rolled_hours, summarize

    cat = ui_project.workspace.catalog

    def stored() -> dict[str, tuple]:                             # the production version's days
        with cat.tx() as c:
            q = sa.select(drift_days).where(drift_days.c.version == cat.get_alias("toy", "production"))
            return {r.day: (r.computed_at, r.requests) for r in c.execute(q)}

    def heat(page: str) -> list[str]:      # the finished days' cells (today's may be another app's last figures)
        chart = re.search(r'<figure id="chart-drift">(.*?)</figure>', page, re.S).group(1)
        today = f" · {ui_traffic['now']:%m-%d}:"
        return [cell for cell in re.findall(r"<title>(.*?)</title>", chart) if today not in cell]

    from modelloop.dashboard.queries import newest_label

    for _ in range(300):                          # the live figures of the last label (a background refresh)
        client.get("/monitoring")
        with cat.tx() as c:
            live_at = c.execute(sa.select(drift_days.c.requests).where(drift_days.c.day == "live")).scalar()
        if live_at == newest_label(cat):
            break
        time.sleep(0.1)
    assert live_at == newest_label(cat)
    first = client.get("/monitoring?lang=en").text
    before = stored()
    days = [(ui_traffic["now"].date() - dt.timedelta(days=d)).isoformat() for d in (2, 1, 0)]
    assert set(days) <= set(before) and before[days[1]][1] == PER_DAY
    with TestClient(create_app(ui_project, keys=[])) as restarted:
        again = restarted.get("/monitoring?lang=en").text
    assert heat(again) == heat(first) and _table(again, "live") == _table(first, "live")
    def finished(found: dict[str, tuple]) -> dict[str, tuple]:
        return {day: v for day, v in found.items() if day != days[2]}

    assert finished(stored()) == finished(before)                   # nothing computed again
    at = dt.datetime.combine(dt.date.fromisoformat(days[0]), dt.time(12))          # two days ago
    cat.add_predictions([{"request_id": "traffic-2-more", "name": "toy", "version": ui_traffic["production"],
                          "at": at, "inputs": {}, "output": {"label": 0}, "latency_ms": 1.0}])
    with TestClient(create_app(ui_project, keys=[])) as restarted:
        assert _settled(restarted, "/monitoring").status_code == 200
    after = stored()
    assert after[days[0]][1] == before[days[0]][1] + 1 and after[days[0]][0] > before[days[0]][0]
    assert after[days[1]] == before[days[1]]
    # today after a restart an hour later, with new requests since: the last figures at once, with their time,
    # while a background thread computes them again
    with cat.tx() as c:
        c.execute(drift_days.update().where(drift_days.c.day == days[2])
                  .values(computed_at=stored()[days[2]][0] - dt.timedelta(hours=1)))
    old = stored()[days[2]]
    cat.add_predictions([{"request_id": "traffic-today-more", "name": "toy", "version": ui_traffic["production"],
                          "at": utcnow(), "inputs": {}, "output": {"label": 0}, "latency_ms": 1.0}])
    midnight = dt.datetime.combine(dt.date.fromisoformat(days[2]), dt.time())
    now_requests = summarize(rolled_hours(cat, "toy", midnight), "day")["buckets"][days[2]]["requests"]
    assert now_requests > old[1]
    with TestClient(create_app(ui_project, keys=[])) as restarted:
        page = restarted.get("/monitoring?lang=en").text
        assert f"as of {old[0]:%H:%M} UTC ({old[1]} requests then)" in page
        for _ in range(300):
            if stored()[days[2]][1] != old[1]:
                break
            time.sleep(0.1)
        assert stored()[days[2]][1] == now_requests
        assert 'id="drift-as-of"' not in restarted.get("/monitoring?lang=en").text


def test_ui_serving_reads_the_servers_errors_and_batch_sizes(ui_project, ui_traffic) -> None:
    from fastapi.testclient import TestClient

    from modelloop.dashboard import create_app
    from modelloop.serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    for records in (1, 1, 7, 300):
        metrics.observe_batch(records, 0.01)
    metrics.errors.labels("validation").inc(3)
    metrics.errors.labels("<b>model</b>").inc()
    with TestClient(create_app(ui_project, keys=[], server_metrics=metrics.render)) as c:
        page = c.get("/serving").text
    errors = re.search(r'<figure id="chart-errors">(.*?)</figure>', page, re.S).group(1)
    assert ">validation<" in errors and "validation: 3" in errors and "&lt;b&gt;model&lt;/b&gt;" in errors
    batches = re.search(r'<figure id="chart-batches">(.*?)</figure>', page, re.S).group(1)
    assert sum(int(n) for n in re.findall(r": (\d+)</title>", batches)) == 4
    assert "modelloop serve --ui" not in page


def test_ui_monitoring_never_waits_for_drift_and_fills_it_in_the_background(client, ui_project, ui_traffic) -> None:
    """A catalog without drift_days: the first view answers with the days and live metrics pending
    (its finished days pending in the answer, a reload note and refresh), and once the background thread is done the page shows the
    figures a full computation gave, stored alike."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app

    cat = ui_project.workspace.catalog
    prod = cat.get_alias("toy", "production")
    days = [(ui_traffic["now"].date() - dt.timedelta(days=d)).isoformat() for d in (2, 1)]   # finished days

    def stored() -> dict[str, tuple]:
        with cat.tx() as c:
            q = sa.select(drift_days).where(drift_days.c.version == prod, drift_days.c.day.in_(days))
            return {r.day: (r.requests, r.figures) for r in c.execute(q)}

    def heat(page: str) -> list[str]:
        chart = re.search(r'<figure id="chart-drift">(.*?)</figure>', page, re.S).group(1)
        return [cell for cell in re.findall(r"<title>(.*?)</title>", chart)
                if any(f" · {d[5:]}:" in cell for d in days)]

    reference = _settled(client).text                   # the figures of a full computation
    expected = stored()
    assert set(expected) == set(days) and heat(reference)
    with cat.tx() as c:
        c.execute(drift_days.delete())                   # the live metrics' row too
    with TestClient(create_app(ui_project, keys=[])) as fresh:
        first = fresh.get("/monitoring?lang=en")
        assert 'id="live-pending"' in first.text and 'id="live"' not in first.text
        assert first.status_code == 200
        status = re.search(r'<ul id="drift-days-status" role="status">(.*?)</ul>', first.text, re.S).group(1)
        assert all(f'<li class="pending" data-day="{d}">{d}: computing</li>' in status for d in days)
        assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in first.text  # a reload without JS
        assert 'data-refresh="/parts/monitoring-drift"' in first.text and 'data-refresh="/parts/monitoring-live"' in first.text
        scripts = re.findall(r"<script[^>]*>", first.text)
        assert scripts == ['<script src="/static/refresh.js" defer>']             # none inline (the CSP)
        done = _settled(fresh)
        assert heat(done.text) == heat(reference) and _table(done.text, "live") == _table(reference, "live")
        assert [a for a in _table(done.text, "alerts") if a[0] in days] == \
            [a for a in _table(reference, "alerts") if a[0] in days]
        assert 'http-equiv="refresh"' not in done.text and 'id="drift-days-status"' not in done.text
    assert stored() == expected


def test_ui_monitoring_shows_a_days_failed_drift_as_an_error(client, ui_project, ui_traffic) -> None:
    """A day whose background computation failed (here: the training rows' snapshot is gone) is shown with
    the error, not left blank or pending for ever; the figures come once the cause is gone."""
    import os
    from pathlib import Path

    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app
    from modelloop.feedback import monitor

    cat = ui_project.workspace.catalog
    prod = cat.get_model("toy", cat.get_alias("toy", "production"))
    snapshot = Path(cat.get_dataset(prod["dataset_id"], "toy")["path"])
    day = (ui_traffic["now"].date() - dt.timedelta(days=1)).isoformat()
    _settled(client)
    with cat.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day == day))
    os.rename(snapshot, snapshot.with_name(snapshot.name + ".away"))
    monitor._TRAINING_ROWS.clear()          # the training rows kept in memory since: as after a restart
    monitor._REFERENCE_OUTPUTS.clear()
    try:
        with TestClient(create_app(ui_project, keys=[])) as fresh:
            page = _settled(fresh)
            error = re.search(rf'<li class="error" data-day="{day}">(.*?)</li>', page.text, re.S)
            assert error and "drift could not be computed: " in error.group(1)
            assert 'class="pending"' not in page.text
    finally:
        os.rename(snapshot.with_name(snapshot.name + ".away"), snapshot)
    with cat.tx() as c:
        assert c.execute(sa.select(drift_days).where(drift_days.c.day == day)).first() is None
    with TestClient(create_app(ui_project, keys=[])) as fresh:
        assert 'class="error"' not in _settled(fresh).text
    with cat.tx() as c:
        assert c.execute(sa.select(drift_days).where(drift_days.c.day == day)).first() is not None


def test_ui_monitoring_two_views_at_once_start_one_computation(client, ui_project, ui_traffic) -> None:
    """Views arriving while a day is being computed leave it to the thread already computing it."""
    import threading

    from fastapi.testclient import TestClient

    from modelloop.catalog import drift_days
    from modelloop.dashboard import create_app

    cat = ui_project.workspace.catalog
    _settled(client)

    def drift_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "modelloop-ui-drift"}

    with cat.tx() as c:
        c.execute(drift_days.delete().where(drift_days.c.day != "live"))
    before = drift_threads()
    with TestClient(create_app(ui_project, keys=[])) as fresh:
        views: list[int] = []
        requests = [threading.Thread(target=lambda: views.append(fresh.get("/monitoring").status_code))
                    for _ in range(3)]
        for r in requests:
            r.start()
        for r in requests:
            r.join()
        assert views == [200, 200, 200] and len(drift_threads() - before) <= 1
        assert 'id="drift-pending"' not in _settled(fresh).text
