"""Small image projects for tests/image and the contract suite's image case (the generated images come
from ``modelloop.examples.images``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

_MLFLOW_TEMPLATE: list[Path] = []


def write_project(root: Path, source: str, **extra) -> Path:
    """A modelloop.yaml for an image project at ``root`` reading ``source`` (32 px, a head, 2 trials)."""
    cfg = {"name": "parts", "task": "image_classification", "data": {"source": source, "target": "label"},
           "model": {"image_size": 32, "method": "head"}, "train": {"budget": 60, "trials": 2}}
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelloop.yaml").write_text(yaml.safe_dump(cfg))
    premigrated_tracking(root)
    return root


def premigrated_tracking(root: Path) -> None:
    """Give the project at ``root`` an empty MLflow store whose schema is already migrated.

    MLflow runs its ~50 alembic migrations on every new SQLite store: 6-10 s per project on the 2-core
    test machine, most of a tiny image project's training time. The migrated empty store is made once
    per test process and copied; the project then creates its experiment in it as on a fresh store.
    """
    if not _MLFLOW_TEMPLATE:
        import mlflow

        folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _MLFLOW_TEMPLATE.append(folder / "mlflow.db")
    state = root / ".modelloop"
    state.mkdir(parents=True, exist_ok=True)
    if not (state / "mlflow.db").exists():
        shutil.copyfile(_MLFLOW_TEMPLATE[0], state / "mlflow.db")
