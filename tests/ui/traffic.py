"""Three days of prediction log for the Serving and Monitoring pages' tests.

Two days ago and today: 150 requests drawn like the training rows; yesterday: 150 with ``amount``
twenty times larger (drift a test must fire on), 120 of them labelled (a quarter wrongly). Today's latencies are known:
100 requests at 3 ms and 50 at 300 ms, plus 20 answered by the other model version.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from toy import make_table

PER_DAY, LABELLED_YESTERDAY, OTHER_VERSION_TODAY = 150, 120, 20


def log_three_days(project: Any) -> dict[str, Any]:
    from modelloop.catalog import utcnow

    cat = project.workspace.catalog
    prod = cat.get_alias("toy", "production")
    other = next(m["version"] for m in cat.list_models("toy") if m["version"] != prod)
    now = utcnow()
    table = make_table(n=3 * PER_DAY + OTHER_VERSION_TODAY, seed=7).drop(columns=["tid", "y"])
    records = table.to_dict("records")
    rows, labels = [], []
    for day in (2, 1, 0):
        for i in range(PER_DAY):
            record = dict(records[day * PER_DAY + i])
            if day == 1:
                record["amount"] = record["amount"] * 20
            p = (i % 10) / 10
            rid = f"traffic-{day}-{i}"
            rows.append({"request_id": rid, "name": "toy", "version": prod,
                         "at": now - dt.timedelta(days=day, seconds=i * 0.05), "inputs": record,
                         "output": {"label": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}},
                         "latency_ms": 3.0 if i < 100 else 300.0})
            if day == 1 and i < LABELLED_YESTERDAY:
                labels.append({"request_id": rid, "label": int(p > 0.5) if i % 4 else 1 - int(p > 0.5),
                               "source": "file"})
    for i in range(OTHER_VERSION_TODAY):
        rows.append({"request_id": f"traffic-other-{i}", "name": "toy", "version": other, "at": now,
                     "inputs": dict(records[3 * PER_DAY + i]), "output": {"label": 0}, "latency_ms": 3.0})
    cat.add_predictions(rows)
    cat.add_feedback_many(labels)
    return {"now": now, "production": prod, "other": other}


def monitoring_settled(client: Any, path: str = "/monitoring?lang=en") -> Any:
    """The Monitoring page once no day's drift and no live figure is pending (computed in the background since
    the first view)."""
    import time

    for _ in range(600):
        page = client.get(path)
        if 'id="drift-pending"' not in page.text and 'id="live-pending"' not in page.text:
            return page
        time.sleep(0.1)
    raise AssertionError("drift still pending after 60 s")
