"""Two versions side by side: dataset versions (schema, rows, quality scores, per-column profile) and model
versions (holdout metrics with the change in each metric's direction, search parameters, size, variants).

Metric intervals (95 %): accuracy, a share of the test rows, gets Wilson's interval from that share and the
test split's row count (:func:`wilson`), at once; every other metric gets a bootstrap interval over the version's answers on its test split (:mod:`.intervals`), computed once per
version in the background and shown as computing until then.

Inputs are ``Project.status()`` rows, the profile's JSON report (``reports/quality-{id}.json``, written by
``modelloop profile``) and the run row of each model; nothing is recomputed, so a diff is as cheap as
reading two rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, ModelloopError, NotFoundError
from ..evaluation.metrics import improvement
from ..project import Project

__all__ = ["PROFILE_FIELDS", "PROPORTIONS", "SOURCE_ROWS", "dataset_source", "diff_datasets", "diff_models", "flatten",
           "wilson"]

# per-column profile figures compared between two dataset versions
PROFILE_FIELDS = ("missing_share", "distinct", "mean", "std", "min", "max")
MAX_PROFILE_BYTES = 32 * 2**20      # a profile report larger than this is not read for a diff
SOURCE_ROWS = 5                     # the Trace page shows this many of a dataset version's rows
SOURCE_CELL_CHARS = 200             # a longer value there (an image's base64, a document) is cut, with "…"
PROPORTIONS = ("accuracy",)         # metrics that are a share of the test rows: Wilson intervals
Z_95 = 1.959963984540054            # the standard normal's 97.5 % quantile


def wilson(share: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``share`` observed on ``n`` rows (95 % by default)."""
    centre = share + z * z / (2 * n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _test_rows(project: Project, dataset_id: str) -> int | None:
    """The rows of the dataset version's frozen test split (None when it has none, or splits that differ)."""
    counts = {int(s["counts"].get("test") or 0) for s in project.workspace.catalog.list_splits(dataset_id)}
    return counts.pop() if len(counts) == 1 and min(counts) > 0 else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _pair(rows: dict[Any, dict[str, Any]], a: str, b: str, what: str, allowed: str) -> tuple[dict, dict]:
    found = []
    for ref in (a, b):
        key: Any = ref
        if what == "model":
            if not ref.isdigit():
                raise ConfigError(f"model version '{ref}' is not a number; allowed: {allowed}")
            key = int(ref)
        if key not in rows:
            raise NotFoundError(f"{what} version '{ref}' does not exist; allowed: {allowed}")
        found.append(rows[key])
    return found[0], found[1]


def _profile(project: Project, dataset_id: str) -> dict[str, Any]:
    path = project.workspace.reports_dir / f"quality-{dataset_id}.json"
    if not path.is_file() or path.stat().st_size > MAX_PROFILE_BYTES:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("columns") or {}
    except (OSError, ValueError):
        return {}


def diff_datasets(project: Project, status: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Columns added, removed and whose kind changed; rows; quality scores; profile figures per column."""
    rows = {d["id"]: d for d in status["datasets"]}
    da, db = _pair(rows, a, b, "dataset", ", ".join(rows) or "none yet")
    ca, cb = da["columns"], db["columns"]
    schema = [{"column": c, "a": ca.get(c), "b": cb.get(c),
               "change": "added" if c not in ca else "removed" if c not in cb else "changed"}
              for c in sorted(set(ca) | set(cb)) if ca.get(c) != cb.get(c)]
    qa, qb = ((d.get("quality") or {}).get("scores") or {} for d in (da, db))
    scores = [{"name": k, "a": qa.get(k), "b": qb.get(k)} for k in sorted(set(qa) | set(qb))]
    pa, pb = _profile(project, da["id"]), _profile(project, db["id"])
    profile = []
    for col in sorted(set(pa) & set(pb)):
        for field in PROFILE_FIELDS:
            va, vb = pa[col].get(field), pb[col].get(field)
            if (va is not None or vb is not None) and va != vb:
                profile.append({"column": col, "field": field, "a": va, "b": vb})
    return {"a": da, "b": db, "schema": schema, "scores": scores, "profile": profile,
            "profiled": bool(pa) and bool(pb)}


def _change(metric: str, a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    try:
        return improvement(metric, float(a), float(b))
    except (ModelloopError, KeyError, ValueError):
        return None


Bootstrapped = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]


def diff_models(project: Project, status: dict[str, Any], a: str, b: str,
                bootstrapped: Bootstrapped | None = None) -> dict[str, Any]:
    """Holdout metrics (b against a, positive = better in the metric's direction) with their 95 % intervals,
    and every parameter, size and format that differs; the run rows come from the catalog.
    ``bootstrapped(catalog model row)`` gives a version's bootstrap intervals (:func:`.intervals.version_intervals`:
    the figures, or None and an error while they are computing or failed)."""
    rows = {m["version"]: m for m in status["models"]}
    ma, mb = _pair(rows, a, b, "model", ", ".join(map(str, rows)) or "none yet")
    cat = project.workspace.catalog
    row_a, row_b = (cat.get_model(project.config.name, m["version"]) for m in (ma, mb))
    info_a, info_b = row_a["info"], row_b["info"]
    n_a, n_b = (_test_rows(project, row["dataset_id"]) for row in (row_a, row_b))

    boot_a, boot_b = ((bootstrapped(row) if bootstrapped else (None, None)) for row in (row_a, row_b))

    def interval(name: str, value: Any, n: int | None, boot: dict[str, Any] | None) -> dict[str, Any] | None:
        found = (boot or {}).get("metrics", {}).get(name)
        if name in PROPORTIONS and n is not None and isinstance(value, int | float) and 0 <= value <= 1:
            low, high = wilson(float(value), n)
            return {"low": low, "high": high, "n": n, "method": "wilson"}
        if found is not None and isinstance(value, int | float):
            return {"low": found["low"], "high": found["high"], "n": (boot or {}).get("n"), "method": "bootstrap"}
        return None

    metrics = [{"name": k, "a": ma["metrics"].get(k), "b": mb["metrics"].get(k),
                "better": _change(k, ma["metrics"].get(k), mb["metrics"].get(k)),
                "interval_a": interval(k, ma["metrics"].get(k), n_a, boot_a[0]),
                "interval_b": interval(k, mb["metrics"].get(k), n_b, boot_b[0])}
               for k in sorted(set(ma["metrics"]) | set(mb["metrics"]))]
    bootstrap = {side: {"pending": bootstrapped is not None and found is None and error is None, "error": error,
                        "n": (found or {}).get("n"), "resamples": (found or {}).get("resamples")}
                 for side, (found, error) in (("a", boot_a), ("b", boot_b))}
    runs = {r["id"]: r for r in cat.list_runs(project.config.name)}

    def described(m: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        run = runs.get(m["run_id"]) or {}
        return {"family": m.get("family"), "dataset": m["dataset"], "formats": ", ".join(m["formats"]),
                "variant": m.get("variant"), "parent_version": m.get("parent_version"),
                "run": m["run_id"], **flatten({"info": {k: v for k, v in info.items()
                                                        if k in ("size_bytes", "latency_p50_ms", "task", "threshold")}}),
                **flatten({"params": (run.get("params") or {}).get("best_params") or {}}),
                "params.best_family": (run.get("params") or {}).get("best_family"),
                "params.trials": (run.get("params") or {}).get("trials")}

    fa, fb = described(ma, info_a), described(mb, info_b)
    keys = sorted(set(fa) | set(fb))
    return {"a": ma, "b": mb, "metrics": metrics, "bootstrap": bootstrap,
            "params": [{"name": k, "a": fa.get(k), "b": fb.get(k)} for k in keys if fa.get(k) != fb.get(k)],
            "same": [k for k in keys if fa.get(k) == fb.get(k)]}


def dataset_source(project: Project, dataset_id: str) -> dict[str, Any]:
    """Where a dataset version came from (its ``source`` record: the file read, or the parent and rules of a
    clean, or the feedback merged) and its first rows, read from the head of its Parquet snapshot only."""
    import pyarrow.parquet as pq

    from ..data.snapshot import ROW_ID, snapshot_file

    row = project.workspace.catalog.get_dataset(dataset_id)
    rows: list[dict[str, Any]] = []
    try:
        batch = next(pq.ParquetFile(snapshot_file(row["path"])).iter_batches(batch_size=SOURCE_ROWS), None)
        rows = [] if batch is None else [{k: _cell(v) for k, v in r.items() if k != ROW_ID} for r in batch.to_pylist()]
    except OSError:                          # the snapshot was removed: the record is still shown
        pass
    return {"source": row["source"], "step": row["step"], "parents": row["parents"], "rows": rows,
            "columns": list(rows[0]) if rows else []}


def _cell(value: Any) -> Any:
    """A first row's value as the Trace page shows it: a text longer than ``SOURCE_CELL_CHARS`` cut (an image
    version's rows hold each file's bytes as base64, hundreds of kilobytes a photo)."""
    if isinstance(value, str) and len(value) > SOURCE_CELL_CHARS:
        return value[:SOURCE_CELL_CHARS] + "…"
    if isinstance(value, bytes) and len(value) > SOURCE_CELL_CHARS:
        return f"<{len(value)} bytes>"
    return value
