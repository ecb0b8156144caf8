"""A project folder: where its state lives and which stores it talks to.

``<project>/.modelloop/`` holds the embedded defaults: ``catalog.db`` (lineage), ``mlflow.db`` +
``mlartifacts/`` (tracking and registry), ``optuna.db`` (searches), ``datasets/`` (versions) and
``reports/``. Each store's URL can be replaced by a PostgreSQL URL in ``storage:``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

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
