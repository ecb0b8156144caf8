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

Every figure of these pages comes from the catalog's rollups (:mod:`.queries`), and a day's drift is kept in
the catalog's ``drift_days`` per (model version, day, monitor settings) with the number of requests that
day it covered: a finished day's count no longer changes, so after a restart, and in every worker of
``serve --ui --workers N``, it is read back rather than computed again; only today's column is recomputed,
at most once a minute (:data:`TODAY_SECONDS`) across the workers sharing the catalog. The page never waits
for drift or live metrics: what the catalog does not hold yet is computed in the background
(:mod:`.background`: one computation of a thing at a time across the processes sharing the catalog) and
shown as pending, or with its error, until a refresh of the page's part (or a reload) finds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..catalog import utcnow
from ..errors import NotFoundError
from ..feedback.monitor import drift_report, live_metrics
from ..project import Project
from .background import Background
from .charts import bar_chart, heat_map, line_chart
from .i18n import strings
from .queries import (RANGES, TrafficRollup, buckets, day_requests, label_coverage, labels_per_version,
                      latest_labeled, newest_label)

log = logging.getLogger(__name__)

__all__ = ["DriftCache", "labels_by_version", "last_alerts", "monitoring_view", "production_live", "serving_view",
           "server_figures", "warm_up"]

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
    that day), live metrics and label counts per newest label; bounded, shared by requests. ``background``
    computes what is missing."""

    def __init__(self, background: Background, size: int = 512):
        self.background = background
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


def _drift_settings(project: Project) -> str:
    """What a day's drift depends on besides its rows and model version: the monitor's settings."""
    text = json.dumps([project.config.monitor.model_dump(mode="json"), DRIFT_DAY_ROWS], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _day_drift(project: Project, model_row: dict[str, Any], day: dt.date, requests: int,
               cache: DriftCache, jobs: list[Callable[[], None]]) -> dict[str, Any]:
    """One day's drift entries (features, prediction, label) over its latest requests, kept in memory and in
    the catalog with the day's count of requests. A finished day is computed once (read back after a
    restart). Today's count moves with traffic: its last figures (this process's, or the catalog's after a
    restart) are shown at once, and computed again in the background when its requests changed and they are
    older than :data:`TODAY_SECONDS`. The page never waits: a day not held yet is added to ``jobs`` (run in
    one background thread by :func:`monitoring_view`) and shown as ``pending``, or with the ``error`` of its
    last try until :data:`~.background.RETRY_SECONDS` later."""
    ws = project.workspace
    key = (model_row["name"], model_row["version"], day.isoformat(), requests)
    cached = cache.get(key)
    if cached is not None:
        return cached
    settings = _drift_settings(project)
    if day != utcnow().date():
        stored = ws.catalog.get_drift_day(key[0], key[1], key[2], settings)
        if stored is not None and stored["requests"] == requests:
            cache.put(key, stored["figures"])
            return stored["figures"]                    # computed before a restart, or by another worker
        return _later(project, model_row, day, requests, cache, settings, jobs, None)
    last = cache.get(key[:3])
    if last is None:
        stored = ws.catalog.get_drift_day(key[0], key[1], key[2], settings)
        if stored is not None:
            last = {**stored["figures"], "requests": stored["requests"], "computed_at": stored["computed_at"]}
            cache.put(key[:3], last)
    if last is None:
        return _later(project, model_row, day, requests, cache, settings, jobs, None)
    if last["requests"] != requests and (utcnow() - last["computed_at"]).total_seconds() >= TODAY_SECONDS:
        return _later(project, model_row, day, requests, cache, settings, jobs, last)
    return last


def _later(project: Project, model_row: dict[str, Any], day: dt.date, requests: int, cache: DriftCache,
           settings: str, jobs: list[Callable[[], None]], last: dict[str, Any] | None) -> dict[str, Any]:
    """``last`` (or a pending day) now, and the day's drift added to ``jobs`` (computed in the background by
    :func:`monitoring_view`); a failure is shown as the day's ``error`` and tried again once it is
    :data:`~.background.RETRY_SECONDS` old."""
    bg = cache.background
    key = f"drift:{project.config.name}:{model_row['version']}:{day.isoformat()}:{settings}"
    error = bg.failure(key)
    if error is not None:
        return {**(last or {"n": 0, "entries": {}}), "error": error}
    jobs.append(lambda: bg.attempt(key, lambda: _compute_day(project, model_row, day, requests, cache, settings),
                                   f"drift of {day}"))
    return last if last is not None else {"n": 0, "entries": {}, "pending": True}


def _compute_day(project: Project, model_row: dict[str, Any], day: dt.date, requests: int, cache: DriftCache,
                 settings: str) -> dict[str, Any]:
    ws, cfg = project.workspace, project.config
    key = (model_row["name"], model_row["version"], day.isoformat(), requests)
    if day != utcnow().date():          # another process may have computed it since the view looked
        stored = ws.catalog.get_drift_day(key[0], key[1], key[2], settings)
        if stored is not None and stored["requests"] == requests:
            cache.put(key, stored["figures"])
            return stored["figures"]
    n = min(requests, cfg.monitor.window, DRIFT_DAY_ROWS)
    found: dict[str, Any] = {"n": n, "entries": {}}
    if n >= cfg.monitor.min_rows:
        drift = drift_report(ws, model_row, day_requests(ws.catalog, cfg.name, day, n))
        entries = {**drift["features"], "(prediction)": drift.get("prediction"), "(label)": drift.get("label")}
        found["entries"] = json.loads(json.dumps({k: v for k, v in entries.items() if v}, default=_plain))
    ws.catalog.put_drift_day(key[0], key[1], key[2], settings, requests, found)
    cache.put(key, found)
    cache.put(key[:3], {**found, "requests": requests, "computed_at": utcnow()})
    return found


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (drift figures are stored as JSON)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


LIVE_DAY = "live"            # the ``drift_days`` row (version 0) that keeps the live metrics


def _live(project: Project, cache: DriftCache, start: bool = True) -> tuple[dict[str, Any] | None, str | None]:
    """``live_metrics`` of the latest labels and the error of their last computation. They are kept in memory
    and in the catalog (``drift_days``, day :data:`LIVE_DAY`) with the newest feedback id they saw. When a
    label arrived since, the last figures are shown at once and computed again in a background thread;
    figures never computed are computed there too (a fresh process imports scikit-learn's metrics for
    them), and None means they are pending, or failed when the error is given (tried again
    :data:`~.background.RETRY_SECONDS` later). ``start=False``: what is known, computing nothing."""
    ws, name = project.workspace, project.config.name
    windows = project.config.monitor.metric_windows
    limit = max(windows, default=1000)
    newest = newest_label(ws.catalog)
    key = ("live", name, newest, limit, tuple(windows))
    found = cache.get(key)
    if found is not None:
        return found, None
    settings = hashlib.sha256(json.dumps([limit, list(windows)]).encode()).hexdigest()[:16]

    def compute() -> dict[str, Any]:
        figures = json.loads(json.dumps(live_metrics(ws, latest_labeled(ws.catalog, name, limit), windows),
                                        default=_plain))
        ws.catalog.put_drift_day(name, 0, LIVE_DAY, settings, newest, figures)
        cache.put(key, figures)
        return figures

    stored = ws.catalog.get_drift_day(name, 0, LIVE_DAY, settings)
    bg, claim = cache.background, f"live:{name}:{settings}"
    if stored is not None and stored["requests"] == newest:
        cache.put(key, stored["figures"])
        return stored["figures"], None
    if not start:
        return (stored["figures"] if stored is not None else None), bg.failure(claim)
    job = bg.job(claim, compute, "live metrics")
    bg.start([job] if job else [], "modelloop-ui-live")
    return (stored["figures"] if stored is not None else None), bg.failure(claim)


def production_live(project: Project, cache: DriftCache, version: int) -> dict[str, Any] | None:
    """The live figure of the project's metric for ``version`` over its shortest window (``value``, ``n``
    labels, ``window``), as Monitoring last computed it (the Overview starts no computation: a thread
    computing beside the page slows every page of the process); None before that or without labels."""
    live, _ = _live(project, cache, start=False)
    for window, figures in ((live or {}).get(str(version)) or {}).items():
        if figures.get(project.config.metric) is not None:
            return {"value": figures[project.config.metric], "n": figures["n"], "window": window}
    return None


def last_alerts(project: Project, cache: DriftCache) -> dict[str, Any] | None:
    """The alerts of the Monitoring page's last computation (the Overview shows them without computing
    drift; None until Monitoring or the warm-up ran)."""
    found: dict[str, Any] | None = cache.get(("alerts", project.config.name))
    return found


def labels_by_version(project: Project, cache: DriftCache) -> dict[int, int]:
    """Labels per model version, from the catalog's ``label_days`` (``cache`` is kept for the callers)."""
    return labels_per_version(project.workspace.catalog, project.config.name)


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
    jobs: list[Callable[[], None]] = []
    per_day = {d: _day_drift(project, model_row, d, counts[d], cache, jobs) for d in days} if model_row else {}
    if jobs and model_row:                  # the days not held yet, newest first, by one thread across processes
        batch = jobs[::-1]
        claim = f"drift:{cfg.name}:{model_row['version']}:{_drift_settings(project)}"
        job = cache.background.job(claim, lambda: [each() for each in batch], "drift")
        cache.background.start([job] if job else [], "modelloop-ui-drift")
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
    live, live_error = _live(project, cache)
    if not any(found.get("pending") or found.get("error") for found in per_day.values()):  # every day known
        cache.put(("alerts", cfg.name), {"at": utcnow().isoformat(timespec="seconds"), "count": len(alerts),
                                         "features": sorted({a["feature"] for a in alerts})})
    shown = per_day.get(today) or {}                 # today's last figures, while newer ones are computed
    as_of = shown.get("computed_at")
    if shown.get("requests", counts[today]) == counts[today] or \
            (as_of and (utcnow() - as_of).total_seconds() < TODAY_SECONDS):
        as_of = None
    return {"model": model_row, "days": [d.isoformat() for d in days], "drift_rows": names,
            "drift_counts": {d.isoformat(): per_day[d]["n"] for d in per_day},
            "drift_pending": [d.isoformat() for d in days if per_day.get(d, {}).get("pending")],
            "drift_failed": {d.isoformat(): per_day[d]["error"] for d in per_day if per_day[d].get("error")},
            "today_as_of": as_of and {"at": as_of.strftime("%H:%M"), "requests": shown["requests"]},
            "heat_map": heat_map(names, cols, cells, title=t["drift_by_day"]) if names else None,
            "alerts": alerts, "coverage": coverage, "live": live or {}, "live_pending": live is None and live_error is None,
            "live_error": live_error, "labels_total": labels_by_version(project, cache),
            "holdout": (model_row or {}).get("metrics", {}), "metric": cfg.metric,
            "coverage_chart": line_chart([c["day"][5:] for c in coverage],
                                         {t["label_share"]: [c["labels"] / c["requests"] if c["requests"] else None
                                                             for c in coverage]}, title=t["label_coverage"])}


def warm_up(project: Project, cache: DriftCache, rollup: TrafficRollup) -> None:
    """Start computing what the catalog does not hold yet for Monitoring (the days of drift never computed,
    today's when older than a minute, in the view's background thread; the live metrics), in a thread
    started with the server; a failure is logged, and the page starts what it needs itself."""
    try:
        start = time.perf_counter()
        monitoring_view(project, cache, rollup, strings("en"))
        log.info("dashboard warm-up ran in %.1f s", time.perf_counter() - start)
    except Exception:  # a warm-up is an optimisation: the page computes, and reports, what it needs
        log.exception("dashboard warm-up failed")
