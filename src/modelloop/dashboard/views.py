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
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..catalog import utcnow
from ..errors import NotFoundError
from ..feedback.monitor import drift_report, live_metrics
from ..project import Project
from .charts import bar_chart, heat_map, line_chart
from .i18n import strings
from .queries import (RANGES, TrafficRollup, buckets, day_requests, label_coverage, labels_per_version,
                      latest_labeled, newest_label)

log = logging.getLogger(__name__)

__all__ = ["DriftCache", "labels_by_version", "last_alerts", "monitoring_view", "serving_view", "server_figures", "warm_up"]

DRIFT_DAYS = 7               # the heat map's columns: today and the six days before
DRIFT_DAY_ROWS = 1000        # a day's latest requests compared (at most monitor.window)
TODAY_SECONDS = 60.0         # today's column is recomputed at most this often
TOP_VERSIONS = 5             # the Serving chart's lines: the busiest versions, then "other"


def _since(keys: list[str], by: str) -> dt.datetime:
    return dt.datetime.strptime(keys[0], "%Y-%m-%d %H" if by == "hour" else "%Y-%m-%d")


def serving_view(project: Project, rollup: TrafficRollup, range_name: str, t: dict[str, str]) -> dict[str, Any]:
    """The Serving page's charts and table over one of :data:`RANGES`."""
    hours, by = RANGES[range_name]
    now = utcnow()
    keys = buckets(now, hours, by)
    found = rollup.traffic(project.workspace.catalog, project.config.name, _since(keys, by), by, now)
    rows = found["buckets"]
    labels = [k[5:] if by == "day" else k[11:] + "h" for k in keys]
    per_version = _top_versions(found["versions"], keys, 3600 if by == "hour" else 86400)
    latency = {name: [(rows.get(k) or {}).get(f"{name}_ms") for k in keys] for name in ("p50", "p95", "p99")}
    return {"range": range_name, "ranges": list(RANGES), "by": by,
            "rows": [{"bucket": k, **rows[k]} for k in reversed(keys) if k in rows],
            "total": sum(r["requests"] for r in rows.values()),
            "requests_chart": line_chart(labels, per_version or {"—": [0.0] * len(keys)},
                                         title=t["requests_per_second"], unit="/s"),
            "latency_chart": line_chart(labels, latency, title=t["latency"], unit=" ms")}


def _top_versions(versions: dict[int, dict[str, int]], keys: list[str], seconds: int) -> dict[str, list[float]]:
    """Requests/s of the :data:`TOP_VERSIONS` busiest versions, the rest summed as ``other``."""
    ranked = sorted(versions, key=lambda v: -sum(versions[v].values()))
    lines = {f"v{v}": [versions[v].get(k, 0) / seconds for k in keys] for v in sorted(ranked[:TOP_VERSIONS])}
    if rest := ranked[TOP_VERSIONS:]:
        lines["other"] = [sum(versions[v].get(k, 0) for v in rest) / seconds for k in keys]
    return lines


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
    """Figures that only change when their key does: finished days' drift per (model version, day, requests
    that day), live metrics and label counts per newest label; bounded, shared by requests."""

    def __init__(self, size: int = 512):
        self.size = size
        self._data: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self.lock = threading.RLock()       # held by a caller updating one entry from its previous value

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._data.get(key)

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """The value under ``key``, computed (outside the lock) the first time."""
        found = self.get(key)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def put(self, key: tuple[Any, ...], value: Any) -> None:
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


def _live(project: Project, cache: DriftCache, limit: int, windows: list[int]) -> dict[str, Any]:
    """``live_metrics`` of the latest labels, computed again only when a label arrived."""
    ws, name = project.workspace, project.config.name
    return cache.memo(("live", name, newest_label(ws.catalog), limit, tuple(windows)),
                      lambda: live_metrics(ws, latest_labeled(ws.catalog, name, limit), windows))


def last_alerts(project: Project, cache: DriftCache) -> dict[str, Any] | None:
    """The alerts of the Monitoring page's last computation (the Overview shows them without computing
    drift; None until Monitoring or the warm-up ran)."""
    found: dict[str, Any] | None = cache.get(("alerts", project.config.name))
    return found


def labels_by_version(project: Project, cache: DriftCache) -> dict[int, int]:
    """Labels per model version: the labels that arrived since the last count are joined and added."""
    cat, name = project.workspace.catalog, project.config.name
    with cache.lock:
        top, counts = cache.get(("labels", name)) or (0, dict[int, int]())
        newest, more = labels_per_version(cat, name, after=top)
        if more:
            counts = {v: counts.get(v, 0) + more.get(v, 0) for v in set(counts) | set(more)}
        cache.put(("labels", name), (newest, counts))
    return counts


def monitoring_view(project: Project, cache: DriftCache, rollup: TrafficRollup, t: dict[str, str]) -> dict[str, Any]:
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
    requests = rollup.traffic(ws.catalog, cfg.name, since, "day", utcnow())["buckets"]
    counts = {d: (requests.get(d.isoformat()) or {}).get("requests", 0) for d in days}
    per_day = {d: _day_drift(project, model_row, d, counts[d], cache) for d in days} if model_row else {}
    names = sorted({k for found in per_day.values() for k in found["entries"]},
                   key=lambda k: (k.startswith("("), k))
    cols = [d.isoformat()[5:] for d in days]
    cells = {(k, d.isoformat()[5:]): c for d, found in per_day.items() for k in found["entries"]
             if (c := _cell(found["entries"][k], found["n"]))}
    alerts = [{"day": d.isoformat(), "feature": k, **c} for d in reversed(days)
              for k in names if (c := cells.get((k, d.isoformat()[5:]))) and c["drifted"]]
    labelled = cache.memo(("coverage", cfg.name, newest_label(ws.catalog), since),
                          lambda: label_coverage(ws.catalog, cfg.name, since))
    coverage = [{"day": d.isoformat(), "requests": counts[d], "labels": labelled.get(d.isoformat(), 0)}
                for d in days]
    windows = cfg.monitor.metric_windows
    live = _live(project, cache, max(windows, default=1000), windows)
    cache.put(("alerts", cfg.name), {"at": utcnow().isoformat(timespec="seconds"), "count": len(alerts),
                                     "features": sorted({a["feature"] for a in alerts})})
    return {"model": model_row, "days": [d.isoformat() for d in days], "drift_rows": names,
            "drift_counts": {d.isoformat(): per_day[d]["n"] for d in per_day},
            "heat_map": heat_map(names, cols, cells, title=t["drift_by_day"]) if names else None,
            "alerts": alerts, "coverage": coverage, "live": live, "labels_total": labels_by_version(project, cache),
            "holdout": (model_row or {}).get("metrics", {}), "metric": cfg.metric,
            "coverage_chart": line_chart([c["day"][5:] for c in coverage],
                                         {t["label_share"]: [c["labels"] / c["requests"] if c["requests"] else None
                                                             for c in coverage]}, title=t["label_coverage"])}


def warm_up(project: Project, cache: DriftCache, rollup: TrafficRollup) -> None:
    """Fill the caches a first visitor would wait for (30 days of hourly traffic, 7 days of drift), in a
    thread started with the server; a failure is logged, and the page computes what it needs itself."""
    try:
        start = time.perf_counter()
        now = utcnow()
        hours, by = RANGES["30d"]
        rollup.hours(project.workspace.catalog, project.config.name, _since(buckets(now, hours, by), by), now)
        monitoring_view(project, cache, rollup, strings("en"))          # counts the labels too
        log.info("dashboard caches warmed in %.1f s", time.perf_counter() - start)
    except Exception:  # a warm-up is an optimisation: the page computes, and reports, what it needs
        log.exception("dashboard warm-up failed")
