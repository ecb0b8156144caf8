"""Two small shops (the recommend example's generator, 60 users and 40 items), each trained once per
session: one with implicit feedback and a time split, one with ratings."""

from __future__ import annotations

from typing import Any

import pytest
from recommend_toy import write_project


def _trained(root: Any, **options: Any) -> Any:
    from modelloop.config import parse_config
    from modelloop.project import Project

    project = Project(parse_config(write_project(root, **options), root=root))
    project.ingest()
    return project, project.train()


@pytest.fixture(scope="session")
def clicks(tmp_path_factory) -> Any:
    """``(project, train summary)``: implicit interactions, split by time."""
    return _trained(tmp_path_factory.mktemp("clicks"), time=True)


@pytest.fixture(scope="session")
def ratings(tmp_path_factory) -> Any:
    """``(project, train summary)``: explicit 1-5 ratings, a random holdout."""
    return _trained(tmp_path_factory.mktemp("ratings"), explicit=True, models=["popularity", "mf"])
