"""Live monitoring: metrics of labeled predictions per model version, drift, alerts.

Drift is measured by ``data.shift.compare_distributions`` (the same code that compares train and
test splits in the quality report): per feature between the production model's training rows and
the most recent prediction inputs, on the predicted labels, and on the labels that came back.

A datetime column is compared through the parts training derives from it (``data.shift.time_parts``,
shared with the profile's train/test shift): ``{col}:hour``, ``{col}:dayofweek``, ``{col}:day`` and
``{col}:month``, each only when the training rows span its whole cycle (a model trained on one quarter
is not compared by month). Its raw value, and the year, only move forward, so they would drift on
every run; where the window lies in time is described under ``window.time_columns`` instead.

A family may compare more than the logged inputs through its optional ``drift_extra(ws, model_row,
reference, recent, psi_threshold=, p_threshold=) -> (features, sections)``: its entries join
``features`` (alerts and ``retrain.on_drift`` read them), its sections join the report (the image family:
penultimate-layer embeddings, ``embedding:pc1`` ... and ``embedding``).

An alert names the test that found the drift (``test``: psi, ks or chi2) with its ``statistic`` and
``p_value``; ``score`` and ``threshold`` stay the PSI and its threshold.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..data.cleaning import CleaningPlan
from ..data.schema import Schema
from ..data.shift import compare_distributions, time_parts
from ..data.stages import cleaning_plan
from ..families.heads import head_for
from ..evaluation.metrics import IN_TARGET_UNITS, improvement
from ..workspace import Workspace

__all__ = ["drift_report", "live_metrics", "monitor", "time_parts", "training_rows"]

log = logging.getLogger(__name__)


def training_rows(ws: Workspace, model_row: dict[str, Any], limit: int = 50_000) -> pd.DataFrame:
    """The rows the model was trained on (train side of its dataset's frozen split), sampled.

    Kept in memory for the last few dataset versions (a version never changes): the dashboard asks for
    the same reference once per day of drift it shows, and each read was a snapshot load and a split
    lookup. The caller gets its own copy to convert columns in.
    """
    from ..data.ingest import ensure_split, load_dataset, split_key

    def load() -> pd.DataFrame:
        drow, df, _ = load_dataset(ws, model_row["dataset_id"])
        train = df[ensure_split(ws, drow, df) == "train"]
        return train.sample(n=limit, random_state=0) if len(train) > limit else train

    key = (str(ws.root), str(model_row["dataset_id"]), split_key(ws.config), limit)
    return _kept(_TRAINING_ROWS, key, load).copy()


_KEEP = 4  # versions kept per cache: a champion and a challenger or two, never the whole history
_TRAINING_ROWS: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_REFERENCE_OUTPUTS: OrderedDict[tuple, list] = OrderedDict()
_KEPT_LOCK = threading.Lock()


def _kept(cache: OrderedDict[tuple, Any], key: tuple, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` on a miss; the least recently used entry past ``_KEEP`` goes."""
    with _KEPT_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()  # outside the lock: two threads may both make it once, neither waits on the other's load
    with _KEPT_LOCK:
        cache[key] = value
        while len(cache) > _KEEP:
            cache.popitem(last=False)
    return value


def live_metrics(ws: Workspace, labeled: list[dict[str, Any]], windows: list[int]) -> dict[str, Any]:
    """Per model version and sliding window (last N labeled predictions): figures and their counts."""
    out: dict[str, Any] = {}
    for version in sorted({r["version"] for r in labeled}):
        info = ws.catalog.get_model(ws.config.name, version)["info"]
        rows = [r for r in labeled if r["version"] == version]
        per: dict[str, Any] = {}
        for w in [*sorted(set(windows)), len(rows)]:
            part = rows[-w:]
            key = "all" if w == len(rows) else f"last_{w}"
            if key != "all" and w >= len(rows):
                continue
            per[key] = {"n": len(part), **_figures(part, info)}
        out[str(version)] = per
    return out


def _figures(rows: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, float | None]:
    """The version's head's live figures (``live_metrics``) of labeled answers."""
    return head_for(info).live_figures([r["label"] for r in rows], [r["output"] for r in rows])


def drift_report(ws: Workspace, model_row: dict[str, Any], recent: list[dict[str, Any]]) -> dict[str, Any]:
    """Feature, prediction and label drift between training rows and recent traffic."""
    from ..families import family_of

    cfg = ws.config.monitor
    schema = Schema.from_dict(model_row["input_schema"])
    kinds = family_of(model_row).drift_columns(schema)
    current = pd.DataFrame.from_records([r["inputs"] for r in recent])
    plan = cleaning_plan(ws, ws.catalog.get_dataset(model_row["dataset_id"]))
    if plan and len(current):  # raw requests vs cleaned training rows: clean the requests the same way
        current = CleaningPlan.from_dict(plan).apply_inference(current)
    for c in kinds:
        if c not in current.columns:
            current[c] = np.nan
    reference = training_rows(ws, model_row)
    for c in kinds:
        if kinds[c] in ("categorical", "boolean"):
            reference[c] = reference[c].astype("string")
            current[c] = current[c].astype("string")
        elif kinds[c] == "numeric":
            current[c] = pd.to_numeric(current[c], errors="coerce")
    plain = {c: k for c, k in kinds.items() if k != "datetime"}
    ref_parts, cur_parts, time_columns = time_parts(reference, current, schema)
    args: dict[str, Any] = {"psi_threshold": cfg.psi_threshold, "p_threshold": cfg.p_value}
    # small_samples: the bins follow the training reference's size and PSI must clear the noise of the two
    # samples' sizes (a 28-image project alarmed on new draws of its own classes with 10 bins)
    features = {**compare_distributions(reference[list(plain)], current[list(plain)], plain, small_samples=True,
                                        **args),
                **compare_distributions(ref_parts, cur_parts, dict.fromkeys(ref_parts.columns, "numeric"),
                                        small_samples=True, **args)}
    sections: dict[str, Any] = {}
    extra = getattr(family_of(model_row), "drift_extra", None)
    if extra is not None and recent:  # what the family compares beyond the logged inputs (image embeddings)
        more, sections = extra(ws, model_row, reference, recent, **args)
        features.update(more)
    features = {c: {**v, "score": v["psi"], "threshold": v.get("psi_threshold", cfg.psi_threshold)}
                for c, v in features.items()}
    return {"features": features, "prediction": _prediction_drift(ws, model_row, reference, recent, args),
            "label": _label_drift(ws, model_row, reference, recent, args), "time_columns": time_columns,
            **sections}


def _prediction_drift(ws: Workspace, model_row: dict, reference: pd.DataFrame, recent: list[dict],
                      args: dict) -> dict[str, Any] | None:
    from ..registry import load_model

    head = head_for(model_row["info"])
    preds = [head.served_output(r["output"] or {}) for r in recent]
    if not preds:
        return None
    from ..data.ingest import split_key

    def outputs() -> list:  # the model's answers on its training rows: the same for every window compared
        return list(head.reference_outputs(load_model(ws, model_row), reference.head(5000), ws.config.data.target))

    key = (str(ws.root), model_row["name"], model_row["version"], str(model_row.get("created_at")),  # a wiped
           str(model_row["dataset_id"]), split_key(ws.config))  # project's new version 1 is another model
    ref_pred = _kept(_REFERENCE_OUTPUTS, key, outputs)
    kind = head.drift_kind
    conv = (lambda v: pd.Series(v, dtype=float)) if kind == "numeric" else (lambda v: pd.Series(v).astype(str))
    res = compare_distributions(pd.DataFrame({"prediction": conv(ref_pred)}),
                                pd.DataFrame({"prediction": conv(preds)}), {"prediction": kind}, small_samples=True,
                                **args)
    return res["prediction"]


def _label_drift(ws: Workspace, model_row: dict, reference: pd.DataFrame, recent: list[dict],
                 args: dict) -> dict | None:
    labels = [r["label"] for r in recent if r.get("label") is not None]
    target = ws.config.data.target
    if len(labels) < ws.config.monitor.min_rows or target not in reference.columns:
        return None
    kind = head_for(model_row["info"]).drift_kind
    conv = (lambda v: pd.Series(v, dtype=float)) if kind == "numeric" else (lambda v: pd.Series(v).astype(str))
    res = compare_distributions(pd.DataFrame({"label": conv(reference[target].tolist())}),
                                pd.DataFrame({"label": conv(labels)}), {"label": kind}, small_samples=True, **args)
    return res["label"]


def _test_fired(d: dict[str, Any], psi_threshold: float, p_value: float) -> dict[str, Any]:
    """``test``, ``statistic``, ``p_value`` and ``why`` (words) of the drift verdict ``d``.

    The headline test is PSI when it crossed its threshold, else the KS or chi² test that did; ``why``
    quotes every test that fired, each with its own threshold, and nothing that did not fire.
    """
    said = []
    for test in d.get("fired", []):
        if test == "psi":
            said.append(f"PSI {d['psi']:.3f} (threshold {d.get('psi_threshold', psi_threshold):.3g})")
        elif test == "ks":
            said.append(f"KS test statistic {d['effect']:.3f}, p-value {d['p_value']:.2g} (below {p_value:g})")
        else:
            said.append(f"chi-squared test p-value {d['p_value']:.2g} (below {p_value:g}), total variation "
                        f"distance {d['effect']:.3f}")
    test = (d.get("fired") or [None])[0]
    return {"test": test, "statistic": d["psi"] if test == "psi" else d["effect"],
            "p_value": None if test == "psi" else d["p_value"], "why": "; ".join(said)}


def _alerts(drift: dict[str, Any], metrics: dict[str, Any], model_row: dict, metric: str,
            max_drop: float, *, psi_threshold: float, p_value: float) -> list[dict[str, Any]]:
    alerts = []
    for col, d in drift.get("features", {}).items():
        if d["drifted"]:
            t = _test_fired(d, psi_threshold, p_value)
            alerts.append({"kind": "feature_drift", "feature": col, "score": d["psi"], "threshold": d["threshold"],
                           "test": t["test"], "statistic": t["statistic"], "p_value": t["p_value"],
                           "message": f"feature '{col}' drifted: {t['why']}"})
    for part in ("prediction", "label"):
        d = drift.get(part)
        if d and d["drifted"]:
            t = _test_fired(d, psi_threshold, p_value)
            alerts.append({"kind": f"{part}_drift", "feature": None, "score": d["psi"], "threshold": None,
                           "test": t["test"], "statistic": t["statistic"], "p_value": t["p_value"],
                           "message": f"{part} distribution drifted: {t['why']}"})
    live = (metrics.get(str(model_row["version"])) or {}).get("all", {})
    ref = model_row["metrics"].get(metric)
    if live.get(metric) is not None and ref is not None and live["n"] >= 30:
        drop = -improvement(metric, ref, live[metric])  # rmse, mae: a share of the holdout figure, as retrain's gate
        if drop > max_drop:
            worse = f"{drop:.1%}" if metric in IN_TARGET_UNITS else f"{drop:.3f}"
            alerts.append({"kind": "metric_drop", "feature": None, "score": live[metric], "threshold": ref,
                           "message": f"live {metric} {live[metric]:.3f} is {worse} worse than on the "
                                      f"holdout ({ref:.3f}), over {live['n']} labeled predictions"})
    return alerts


def _notify(url: str, payload: dict[str, Any]) -> str:
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return f"sent ({resp.status})"
    except OSError as exc:
        log.warning("monitor webhook %s failed: %s", url, exc)
        return f"failed: {exc}"


def monitor(ws: Workspace, *, window: int | None = None, notify: bool = True) -> dict[str, Any]:
    """Live metrics per version, drift per feature, alerts; JSON-ready, plus an HTML report."""
    from ..registry import resolve_model
    from .report import render_monitor

    cfg = ws.config
    model_row = resolve_model(ws, None)
    recent = ws.catalog.recent_predictions(cfg.name, limit=window or cfg.monitor.window)
    labeled = ws.catalog.labeled_predictions(cfg.name)
    metrics = live_metrics(ws, labeled, cfg.monitor.metric_windows)
    enough = len(recent) >= cfg.monitor.min_rows
    drift = drift_report(ws, model_row, recent) if enough else {"features": {}, "prediction": None,
                                                                "label": None}
    time_columns = drift.pop("time_columns", {})
    alerts = _alerts(drift, metrics, model_row, cfg.metric, cfg.retrain.max_holdout_drop,
                     psi_threshold=cfg.monitor.psi_threshold, p_value=cfg.monitor.p_value)
    times = [r["at"] for r in recent]
    from ..families import family_of

    figures = getattr(family_of(model_row), "serving_figures", None)  # a family's figures of its served answers
    result = {
        "model": {"name": model_row["name"], "version": model_row["version"]},
        "window": {"predictions": len(recent), "labeled": sum(r.get("label") is not None for r in recent),
                   "from": min(times).isoformat() if times else None,
                   "to": max(times).isoformat() if times else None,
                   "enough_for_drift": enough, "min_rows": cfg.monitor.min_rows, "time_columns": time_columns},
        "metrics": metrics, "holdout_metrics": model_row["metrics"], "metric": cfg.metric,
        "drift": drift, "alerts": alerts,
        "drifted_features": sorted(c for c, d in drift["features"].items() if d["drifted"]),
        "serving": figures(recent) if figures is not None else None,
    }
    if alerts and cfg.monitor.webhook and notify:
        result["webhook"] = _notify(cfg.monitor.webhook, {"project": cfg.name, **result})
    path = ws.reports_dir / f"monitor-{cfg.name}.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_monitor(result))
    tmp.replace(path)
    result["report"] = str(path)
    return result


def model_age_days(model_row: dict[str, Any]) -> float:
    return (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - model_row["created_at"]).total_seconds() / 86400


