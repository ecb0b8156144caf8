"""One small sensors project (the bundled example's generator, 1,500 readings), trained once per session."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

FAST = {"budget": 30, "trials": 6}


def sensors_config(rows: int = 1500) -> dict[str, Any]:
    raw = yaml.safe_load(resources.files("modelloop.examples").joinpath("anomaly.yaml").read_text())
    raw["train"] = dict(FAST)
    return raw


def write_sensors(root: Path, rows: int = 1500, seed: int = 0) -> Path:
    from modelloop.examples.sensors import generate_sensors

    (root / "data").mkdir(parents=True, exist_ok=True)
    path = root / "data" / "sensors.csv"
    generate_sensors(rows, seed=seed).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def sensors(tmp_path_factory) -> Any:
    """``(project, train summary, csv path)`` of the trained sensors project."""
    from modelloop.config import parse_config
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("sensors")
    path = write_sensors(root)
    project = Project(parse_config(sensors_config(), root=root))
    project.ingest()
    summary = project.train()
    return project, summary, path
