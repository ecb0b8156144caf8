"""A project folder: where its state lives and which stores it talks to.

``<project>/.modelloop/`` holds the embedded defaults: ``catalog.db`` (lineage), ``mlflow.db`` +
``mlartifacts/`` (tracking and registry), ``optuna.db`` (searches), ``datasets/`` (versions) and
``reports/``. Each store's URL can be replaced by a PostgreSQL URL in ``storage:``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .config import Config

__all__ = ["STATE_DIR", "Workspace"]

STATE_DIR = ".modelloop"


class Workspace:
    """Paths and store URLs of one project; opening the catalog is lazy."""

    def __init__(self, config: Config):
        self.config = config
        self.root = Path(config.root).resolve()
        self.state = self.root / STATE_DIR

    def _dir(self, name: str) -> Path:
        p = self.state / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def _sqlite(self, name: str) -> str:
        self.state.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.state / name}"

    @property
    def catalog_url(self) -> str:
        return self.config.storage.catalog or self._sqlite("catalog.db")

    @property
    def tracking_url(self) -> str:
        return self.config.storage.tracking or self._sqlite("mlflow.db")

    @property
    def optuna_url(self) -> str:
        return self.config.storage.optuna or self._sqlite("optuna.db")

    @property
    def datasets_dir(self) -> Path:
        return self._dir("datasets")

    @property
    def reports_dir(self) -> Path:
        return self._dir("reports")

    @property
    def artifacts_dir(self) -> Path:
        return self._dir("mlartifacts")

    @property
    def models_dir(self) -> Path:
        return self._dir("models")

    def study_dir(self, study: str) -> Path:
        return self._dir(f"studies/{study}")

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.catalog_url)

    def settle_task(self, *, dataset: dict[str, Any] | None = None, model: dict[str, Any] | None = None) -> None:
        """Fill in the task that ``modelloop.yaml`` leaves out, from what a stage is about to use.

        A dataset version carries the task inferred at its ingest (versions ingested before that was
        recorded are inferred again from their target column); a model carries the task it was
        trained for, which is what scoring, monitoring and retraining it must follow. A task set in
        the config always wins: then this does nothing.
        """
        cfg = self.config
        if cfg.task is not None and cfg.task_inferred is None:
            return
        if model is not None:
            info = model.get("info") or {}
            found = info.get("task_inferred") or {
                "task": _task_of_kind(str(info.get("task"))),
                "reason": f"model {model['name']}:{model['version']} was trained for {info.get('task')}"}
            cfg.settle_task(found["task"], found["reason"])
        elif dataset is not None:
            from .data.snapshot import read_snapshot
            from .data.task import infer_task, recorded_task

            inferred = recorded_task(self.catalog, dataset)
            if inferred is None:
                target = cfg.data.target
                inferred = infer_task(read_snapshot(dataset["path"], columns=[target])[target], target)
            cfg.settle_task(inferred.task, inferred.reason)


def _task_of_kind(kind: str) -> str:
    """The config task (of the family that serves a left-out task) whose head predicts output ``kind``."""
    from .families import FAMILIES, INFERRED_TASKS_FAMILY, head_of_task
    from .families.heads import KINDS

    tasks = FAMILIES[INFERRED_TASKS_FAMILY].tasks
    return next((t for t in tasks if head_of_task(t) is KINDS.get(kind)), tasks[0])
