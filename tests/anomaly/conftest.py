"""One small sensors project (the bundled example's generator, 1,500 readings), trained once per session."""

from __future__ import annotations

from typing import Any

import pytest
from anomaly_toy import sensors_config, write_sensors


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
