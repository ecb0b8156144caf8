"""Bootstrap 95 % intervals of a model version's holdout metrics, for the Models comparison.

The catalog keeps a version's holdout figures, not its per-row test answers, so the answers are made again:
the version's model scores its dataset's frozen test split (the rows its holdout figures came from), and
the head's own ``evaluate`` (what ``modelloop evaluate`` computes) runs on :data:`RESAMPLES` resamples of
those rows drawn with replacement under a fixed seed; each metric's interval is the 2.5th and 97.5th
percentiles of its resampled values. A model never changes and its test split is frozen, so a version's
intervals are computed once, in the background (:mod:`.background`), and kept in the catalog's
``drift_days`` under day :data:`INTERVALS_DAY` (keyed by the resampling settings) for every process.

The computation runs in a child process: it is seconds of Python (scikit-learn's metrics on every
resample), and in a thread of the server it held the interpreter's lock against every page the process
answered meanwhile (benchmarks/dashboard.py: pages after a first comparison went from tens of milliseconds
to several hundred). One child per server process, spawned (no lock of the server's threads inherited) at
the first computation and kept, so its imports (seconds) are paid once; versions queue for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from ..project import Project
from .background import Background

__all__ = ["INTERVALS_DAY", "RESAMPLES", "SEED", "bootstrap_intervals", "version_intervals"]

RESAMPLES = 200              # resamples of the test rows; the percentiles move by ~0.002 between seeds at 200
SEED = 0                     # the same intervals on every run and in every process
INTERVALS_DAY = "intervals"  # the ``drift_days`` row (day) that keeps a version's intervals
MAX_ROWS = 20_000            # a larger test split is subsampled (with the same seed) before resampling


def _settings() -> str:
    return hashlib.sha256(json.dumps([RESAMPLES, SEED, MAX_ROWS]).encode()).hexdigest()[:16]


def bootstrap_intervals(project: Project, model_row: dict[str, Any]) -> dict[str, Any]:
    """``{"n": test rows, "resamples", "seed", "metrics": {metric: {"low", "high"}}}`` of one version, from
    its model's answers on its dataset's test split; metrics a resample cannot compute (a class missing
    from it) use the resamples that could, and a metric no resample gave is left out."""
    from ..data.ingest import ensure_split, load_dataset
    from ..evaluation.evaluate import scores_of
    from ..families import label_column
    from ..families.heads import head_for
    from ..registry import load_model

    ws = project.workspace
    model = load_model(ws, model_row)
    target = label_column(ws.config)
    drow, full, _ = load_dataset(ws, model_row["dataset_id"])
    test = full[ensure_split(ws, drow, full) == "test"]
    if target is None or target not in test.columns or getattr(model, "evaluate_interactions", None):
        return {"n": 0, "resamples": 0, "seed": SEED, "metrics": {}}   # no label column to score against
    test = test[test[target].notna()]
    rng = np.random.default_rng(SEED)
    if len(test) > MAX_ROWS:
        test = test.iloc[np.sort(rng.choice(len(test), MAX_ROWS, replace=False))]
    head = head_for({"task": model_row["info"]["task"], "classes": getattr(model, "classes_", None),
                     "threshold": getattr(model, "threshold_", None)})
    truth, scores = scores_of(model, test, target, model_row["info"]["task"])  # what `evaluate` scores
    values: dict[str, list[float]] = {}
    for _ in range(RESAMPLES if len(test) else 0):
        rows = rng.integers(0, len(test), len(test))
        try:
            figures = head.evaluate(truth[rows], scores[rows])["metrics"]
        except ValueError:                  # a resample without a class a metric needs
            continue
        for name, value in figures.items():
            if isinstance(value, int | float) and math.isfinite(value):
                values.setdefault(name, []).append(float(value))
    return {"n": len(test), "resamples": RESAMPLES, "seed": SEED,
            "metrics": {name: {"low": float(np.percentile(v, 2.5)), "high": float(np.percentile(v, 97.5)),
                               "resamples": len(v)} for name, v in values.items()}}


_CHILD: list[ProcessPoolExecutor] = []     # the one child of this process, once started
_CHILD_LOCK = threading.Lock()


def _bootstrap_in_child(config: Any, model_row: dict[str, Any]) -> dict[str, Any]:
    """:func:`bootstrap_intervals` in the child, over a catalog connection of its own for the call."""
    project = Project(config)
    try:
        return bootstrap_intervals(project, model_row)
    finally:
        project.workspace.catalog.close()


def _bootstrap_elsewhere(project: Project, model_row: dict[str, Any]) -> dict[str, Any]:
    """:func:`bootstrap_intervals` in this process's child; its error is raised here as it was there (a
    child that died is replaced at the next call)."""
    import multiprocessing

    with _CHILD_LOCK:
        if not _CHILD:
            _CHILD.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        child = _CHILD[0]
    try:
        return child.submit(_bootstrap_in_child, project.config, model_row).result()
    except BrokenProcessPool:
        with _CHILD_LOCK:
            if _CHILD and _CHILD[0] is child:
                _CHILD.clear()
        raise


def version_intervals(project: Project, background: Background,
                      model_row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A version's stored intervals and None, or None (computing now, in the background) and the error of
    the last try when it failed less than a minute ago."""
    catalog, name, version = project.workspace.catalog, model_row["name"], model_row["version"]
    stored = catalog.get_drift_day(name, version, INTERVALS_DAY, _settings())
    if stored is not None:
        return stored["figures"], None
    key = f"intervals:{name}:{version}:{_settings()}"

    def compute() -> None:
        found = _bootstrap_elsewhere(project, model_row)
        catalog.put_drift_day(name, version, INTERVALS_DAY, _settings(), found["n"], found)

    job = background.job(key, compute, f"metric intervals of {name}:{version}")
    background.start([job] if job else [], "modelloop-ui-intervals")
    return None, background.failure(key)
