"""Session fixtures of the dashboard tests; the projects are built by tests/ui_toy.py."""

from __future__ import annotations

import pytest
import ui_toy


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory):
    return ui_toy.trained_project(tmp_path_factory.mktemp("ui"))


@pytest.fixture(scope="session")
def ui_xss_project(tmp_path_factory: pytest.TempPathFactory):
    return ui_toy.xss_project(tmp_path_factory.mktemp("ui-xss"))


@pytest.fixture(scope="session")
def ui_traffic(ui_project):
    """Three days of logged traffic on ``ui_project`` (see ``traffic.log_three_days``)."""
    import traffic

    return traffic.log_three_days(ui_project)
