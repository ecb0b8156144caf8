"""One small sensors project (the bundled example's generator, 1,500 readings over two weeks, about 107 a
day), trained once per session with an alert budget of 2 alerts per day (about 1.9 % of the records)."""

from __future__ import annotations

from typing import Any

import pytest
from anomaly_toy import PER_DAY, sensors_config, write_sensors


@pytest.fixture(scope="session")
def sensors(tmp_path_factory) -> Any:
    """``(project, train summary, csv path)`` of the trained sensors project."""
    from modelloop.config import parse_config
    from modelloop.project import Project

    root = tmp_path_factory.mktemp("sensors")
    path = write_sensors(root)
    project = Project(parse_config(sensors_config(per_day=PER_DAY), root=root))
    project.ingest()
    summary = project.train()
    return project, summary, path
