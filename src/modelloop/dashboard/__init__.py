"""``modelloop ui``: the loop in a browser (server-rendered pages over the Project API).

A package named ``dashboard`` because ``modelloop.ui`` is the terminal output module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..project import Project
from .app import create_app

if TYPE_CHECKING:
    from ..serving.security import ApiKeys
    from ..workspace import Workspace

__all__ = ["UI_PREFIX", "create_app", "mount_ui", "run_ui"]

UI_PREFIX = "/ui"


def mount_ui(app: Any, ws: Workspace, keys: ApiKeys) -> None:
    """``modelloop serve --ui``: the dashboard's pages under ``/ui`` of the prediction server ``app``,
    checking the server's own keys and reading its metrics; the serving routes are left as they are."""
    state = app.state.serving
    app.mount(UI_PREFIX, create_app(Project(ws.config), keys=keys, server_metrics=state.metrics.render,
                                       warm=True))


def run_ui(project: Project, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the dashboard until stopped (``ui.host``:``ui.port``, 127.0.0.1:8001 by default)."""
    import uvicorn

    cfg = project.config.ui
    uvicorn.run(create_app(project, warm=True), host=host or cfg.host, port=cfg.port if port is None else port,
                log_level="warning")
