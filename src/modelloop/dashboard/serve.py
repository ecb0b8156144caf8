"""``modelloop serve --ui``: the prediction server with the dashboard's pages under ``/ui``.

Serving knows nothing of the dashboard (the dashboard reads through the Project API, which runs the
server): this module hands ``serving.launch.serve`` a builder for one process and an import string
for each of several workers, both mounting the pages behind the server's own keys.
"""

from __future__ import annotations

from typing import Any

from ..serving.config import ServeConfig
from ..serving.launch import build_app, serve, spec_from_env
from ..workspace import Workspace
from . import mount_ui

__all__ = ["app_from_env", "build_app_with_ui", "serve_with_ui"]


def build_app_with_ui(ws: Workspace, cfg: ServeConfig, model: str | None) -> Any:
    """The prediction API of one process, with the dashboard mounted under ``/ui``; the serving routes
    are the same as without it."""
    app = build_app(ws, cfg, model)
    mount_ui(app, ws, app.state.serving.keys)
    return app


def app_from_env() -> Any:
    """One worker's app with the dashboard (uvicorn's factory for ``serve --ui --workers N``)."""
    return build_app_with_ui(*spec_from_env())


def serve_with_ui(ws: Workspace, **options: Any) -> None:
    """``serving.launch.serve`` with the dashboard under ``/ui`` in every process."""
    serve(ws, build=build_app_with_ui, factory="modelloop.dashboard.serve:app_from_env", **options)
