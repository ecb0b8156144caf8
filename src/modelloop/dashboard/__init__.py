"""``modelloop ui``: the loop in a browser (server-rendered pages over the Project API).

A package named ``dashboard`` because ``modelloop.ui`` is the terminal output module.
"""

from __future__ import annotations

from ..project import Project
from .app import create_app

__all__ = ["create_app", "run_ui"]


def run_ui(project: Project, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the dashboard until stopped (``ui.host``:``ui.port``, 127.0.0.1:8001 by default)."""
    import uvicorn

    cfg = project.config.ui
    uvicorn.run(create_app(project), host=host or cfg.host, port=cfg.port if port is None else port,
                log_level="warning")
