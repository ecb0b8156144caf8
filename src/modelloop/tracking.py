"""MLflow: every search trial and every final model is a run; chosen models enter the registry.

Thin wrappers that fix the choices the rest of modelloop relies on: the experiment's artifacts live
inside the workspace (not ``./mlruns``), model logging passes ``pip_requirements`` (inferring them
costs ~11 s per model), and MLflow's own log chatter stays out of the user's terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .user_cache import cache_root

__all__ = ["Tracker"]

_REQUIREMENTS = ["scikit-learn", "lightgbm", "xgboost-cpu", "pandas", "numpy", "modelloop"]


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def seed_sqlite_store(tracking_url: str, artifact_dir: Path) -> None:
    """Start a new SQLite tracking store from an empty one whose schema MLflow already migrated.

    MLflow runs its ~50 alembic migrations on every new SQLite store: 6-10 s on a 2-core machine,
    about half of ``modelloop run`` on a small project. The migrated empty store is made once per
    MLflow version in the user's cache and copied; MLflow then finds its schema at head and goes on
    as on a fresh store. Both files appear by rename, so a crash or a concurrent project never sees
    a half-copied one. A store that exists, or any other URL, is left alone.
    """
    import shutil
    import sqlite3
    import tempfile

    if not tracking_url.startswith("sqlite:///"):
        return
    target = Path(tracking_url[len("sqlite:///"):])
    if target.exists():
        return
    import mlflow

    template = cache_root() / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
                made = Path(tmp) / "mlflow.db"
                mlflow.MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()
                made.replace(template)
        part = target.with_name(target.name + ".part")
        shutil.copyfile(template, part)
        with contextlib.closing(sqlite3.connect(part)) as db, db:  # MLflow's Default experiment
            db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                       ((Path(artifact_dir).resolve() / "0").as_uri(),))
        part.replace(target)
    except (OSError, sqlite3.Error):  # no cache to write to: MLflow migrates a new store itself
        with contextlib.suppress(OSError):
            target.with_name(target.name + ".part").unlink()


class Tracker:
    """One MLflow experiment per project, stored where the workspace says."""

    def __init__(self, tracking_url: str, experiment: str, artifact_dir: Path):
        _quiet()
        import mlflow

        _quiet()
        self.mlflow = mlflow
        self.url = tracking_url
        seed_sqlite_store(tracking_url, artifact_dir)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_url, registry_uri=tracking_url)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=Path(artifact_dir).resolve().as_uri())
        else:
            self.experiment_id = exp.experiment_id

    @contextmanager
    def run(self, name: str, *, tags: dict[str, str] | None = None,
            parent: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED/KILLED when the block raises."""
        all_tags = dict(tags or {})
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        rid = run.info.run_id
        try:
            yield rid
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(rid, status)
            raise
        self.client.set_terminated(rid, "FINISHED")

    def log(self, run_id: str, *, params: dict[str, Any] | None = None,
            metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> None:
        """Params, metrics and tags in one batch call (one round trip to the store)."""
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(k, str(v)[:6000]) for k, v in _flat(params or {}).items()]
        m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()
             if v is not None and v == v]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        self.client.log_batch(run_id, metrics=m, params=p, tags=t)

    def log_model(self, run_id: str, model: Any, *, name: str) -> int:
        """Log a scikit-learn-compatible model to the run and register it; returns the version."""
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.url)
        mlflow.set_registry_uri(self.url)
        _quiet()
        with mlflow.start_run(run_id=run_id), contextlib.redirect_stderr(io.StringIO()):
            # cloudpickle: our own model objects, loaded only from our own registry (skops, MLflow's
            # default, refuses types it does not know, such as TabularModel).
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=_REQUIREMENTS,
                                            registered_model_name=name,
                                            serialization_format="cloudpickle")
        return int(info.registered_model_version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))
