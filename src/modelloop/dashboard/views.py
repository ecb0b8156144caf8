"""What the Serving and Monitoring pages show, built from the prediction log and the monitor's own code.

* **Serving**: requests/s per model version and latency percentiles per hour (24 h) or day (7 d, 30 d),
  aggregated in SQL (:mod:`.queries`); errors by kind and batch sizes since the server started come from
  the prediction server's metrics when the pages are mounted in it (``serve --ui``): the log holds only
  answered predictions.
* **Monitoring**: drift per feature by day, each day's latest requests against the production model's
  training rows through ``feedback.monitor.drift_report`` (what ``modelloop monitor`` computes, so the
  heat map and the command agree on a day's window); live metrics of the latest labels per version through
  ``feedback.monitor.live_metrics`` with the number of labels behind each figure; the cells whose tests
  fired, as alerts; the share of each day's predictions that got a label.

A finished day's drift cannot change, so it is cached per (model version, day, requests that day); only
today's column is recomputed when new requests arrived.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from ..catalog import utcnow
from ..errors import NotFoundError
from ..feedback.monitor import drift_report, live_metrics
from ..project import Project
from .charts import bar_chart, heat_map, line_chart
from .queries import (RANGES, buckets, day_requests, label_coverage, labels_per_version, latest_labeled,
                      traffic)

__all__ = ["DriftCache", "monitoring_view", "serving_view", "server_figures"]

DRIFT_DAYS = 7               # the heat map's columns: today and the six days before
DRIFT_DAY_ROWS = 1000        # a day's latest requests compared (at most monitor.window)
TODAY_SECONDS = 60.0         # today's column is recomputed at most this often


def _since(keys: list[str], by: str) -> dt.datetime:
    return dt.datetime.strptime(keys[0], "%Y-%m-%d %H" if by == "hour" else "%Y-%m-%d")


def serving_view(project: Project, range_name: str, t: dict[str, str]) -> dict[str, Any]:
    """The Serving page's charts and table over one of :data:`RANGES`."""
    hours, by = RANGES[range_name]
    keys = buckets(utcnow(), hours, by)
    found = traffic(project.workspace.catalog, project.config.name, _since(keys, by), by)
    rows = found["buckets"]
    labels = [k[5:] if by == "day" else k[11:] + "h" for k in keys]
    per_version = {f"v{v}": [counts.get(k, 0) / (3600 if by == "hour" else 86400) for k in keys]
                   for v, counts in sorted(found["versions"].items())}
    latency = {name: [(rows.get(k) or {}).get(f"{name}_ms") for k in keys] for name in ("p50", "p95", "p99")}
    return {"range": range_name, "ranges": list(RANGES), "by": by,
            "rows": [{"bucket": k, **rows[k]} for k in reversed(keys) if k in rows],
            "total": sum(r["requests"] for r in rows.values()),
            "requests_chart": line_chart(labels, per_version or {"—": [0.0] * len(keys)},
                                         title=t["requests_per_second"], unit="/s"),
            "latency_chart": line_chart(labels, latency, title=t["latency"], unit=" ms")}


def server_figures(metrics_text: bytes | None, t: dict[str, str]) -> dict[str, Any] | None:
    """Errors by kind and the batch-size histogram from the server's Prometheus text (since it started)."""
    if metrics_text is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    errors: dict[str, float] = {}
    batches: list[tuple[str, float]] = []
    for family in text_string_to_metric_families(metrics_text.decode()):
        for s in family.samples:
            if s.name == "modelloop_errors_total":
                errors[s.labels.get("kind", "?")] = errors.get(s.labels.get("kind", "?"), 0.0) + s.value
            elif s.name == "modelloop_batch_size_bucket":
                batches.append((s.labels["le"], s.value))
    per_bucket: list[tuple[str, float]] = []
    below, prev = 0.0, 0.0
    for le, cum in batches:                                 # cumulative -> per bucket
        per_bucket.append((f"≤{float(le):g}" if le != "+Inf" else f">{prev:g}", cum - below))
        below, prev = cum, float(le) if le != "+Inf" else prev
    shown = [(label, n) for label, n in per_bucket if n > 0]
    return {"errors": errors, "requests_with_errors": sum(errors.values()),
            "errors_chart": bar_chart(list(errors), list(errors.values()), title=t["errors_by_kind"],
                                      colours=("#d2453c",)) if errors else None,
            "batch_chart": bar_chart([b for b, _ in shown], [n for _, n in shown], title=t["batch_sizes"])
            if shown else None}


class DriftCache:
    """Finished days' drift per (model version, day, requests that day); bounded, shared by requests."""

    def __init__(self, size: int = 512):
        self.size = size
        self._data: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: tuple[Any, ...], value: dict[str, Any]) -> None:
        with self._lock:
            if len(self._data) >= self.size:
                self._data.pop(next(iter(self._data)))
            self._data[key] = value


def _cell(entry: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    if not entry:
        return None
    fired = entry.get("fired") or []
    text = f"PSI {entry['psi']:.3f} (threshold {entry.get('threshold', entry.get('psi_threshold', 0)):.3g})"
    if entry.get("p_value") is not None:
        text += f", p {entry['p_value']:.2g}"
    text += f", {n} requests" + (f"; fired: {', '.join(fired)}" if fired else "")
    return {"score": entry["psi"], "threshold": entry.get("threshold") or entry.get("psi_threshold") or 0.2,
            "drifted": bool(entry.get("drifted")), "fired": fired, "text": text}


def _day_drift(project: Project, model_row: dict[str, Any], day: dt.date, requests: int,
               cache: DriftCache) -> dict[str, Any]:
    """One day's drift entries (features, prediction, label) over its latest requests; a day is read again
    only when its count of requests changed (today), so finished days cost one dict lookup."""
    ws, cfg = project.workspace, project.config
    key = (model_row["name"], model_row["version"], day.isoformat(), requests)
    cached = cache.get(key)
    if cached is not None:
        return cached
    if day == utcnow().date():            # today's count moves with traffic: recompute at most once a minute
        recent = cache.get(key[:3])
        if recent is not None and time.monotonic() - recent["computed"] < TODAY_SECONDS:
            return recent
    n = min(requests, cfg.monitor.window, DRIFT_DAY_ROWS)
    found: dict[str, Any] = {"n": n, "entries": {}}
    if n >= cfg.monitor.min_rows:
        drift = drift_report(ws, model_row, day_requests(ws.catalog, cfg.name, day, n))
        entries = {**drift["features"], "(prediction)": drift.get("prediction"), "(label)": drift.get("label")}
        found["entries"] = {k: v for k, v in entries.items() if v}
    cache.put(key, found)
    cache.put(key[:3], {**found, "computed": time.monotonic()})
    return found


def monitoring_view(project: Project, cache: DriftCache, t: dict[str, str]) -> dict[str, Any]:
    """Drift heat map by day, alerts (the cells whose tests fired), live metrics, label coverage."""
    from ..registry import resolve_model

    ws, cfg = project.workspace, project.config
    today = utcnow().date()
    days = [today - dt.timedelta(days=i) for i in range(DRIFT_DAYS - 1, -1, -1)]
    since = dt.datetime.combine(days[0], dt.time())
    try:
        model_row = resolve_model(ws, None)
    except NotFoundError:
        model_row = None
    requests = traffic(ws.catalog, cfg.name, since, "day")["buckets"]
    counts = {d: (requests.get(d.isoformat()) or {}).get("requests", 0) for d in days}
    per_day = {d: _day_drift(project, model_row, d, counts[d], cache) for d in days} if model_row else {}
    names = sorted({k for found in per_day.values() for k in found["entries"]},
                   key=lambda k: (k.startswith("("), k))
    cols = [d.isoformat()[5:] for d in days]
    cells = {(k, d.isoformat()[5:]): c for d, found in per_day.items() for k in found["entries"]
             if (c := _cell(found["entries"][k], found["n"]))}
    alerts = [{"day": d.isoformat(), "feature": k, **c} for d in reversed(days)
              for k in names if (c := cells.get((k, d.isoformat()[5:]))) and c["drifted"]]
    labelled = label_coverage(ws.catalog, cfg.name, since)
    coverage = [{"day": d.isoformat(), "requests": counts[d], "labels": labelled.get(d.isoformat(), 0)}
                for d in days]
    windows = cfg.monitor.metric_windows
    live = live_metrics(ws, latest_labeled(ws.catalog, cfg.name, max(windows, default=1000)), windows)
    return {"model": model_row, "days": [d.isoformat() for d in days], "drift_rows": names,
            "drift_counts": {d.isoformat(): per_day[d]["n"] for d in per_day},
            "heat_map": heat_map(names, cols, cells, title=t["drift_by_day"]) if names else None,
            "alerts": alerts, "coverage": coverage, "live": live, "labels_total": labels_per_version(ws.catalog,
                                                                                                   cfg.name),
            "holdout": (model_row or {}).get("metrics", {}), "metric": cfg.metric,
            "coverage_chart": line_chart([c["day"][5:] for c in coverage],
                                         {t["label_share"]: [c["labels"] / c["requests"] if c["requests"] else None
                                                             for c in coverage]}, title=t["label_coverage"])}
