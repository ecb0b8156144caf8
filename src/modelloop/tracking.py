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


class Tracker:
    """One MLflow experiment per project, stored where the workspace says."""

    def __init__(self, tracking_url: str, experiment: str, artifact_dir: Path):
        _quiet()
        import mlflow

        _quiet()
        self.mlflow = mlflow
        self.url = tracking_url
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
