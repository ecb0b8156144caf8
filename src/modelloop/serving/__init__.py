"""Serving: a FastAPI/uvicorn prediction API over the production model (ONNX Runtime when it can).

``create_app(ws)`` builds the ASGI app, ``serve(ws, host, port, workers)`` runs it, ``ServeConfig``
is the ``serve:`` section of ``modelloop.yaml``. Importing this package stays light (pydantic only):
FastAPI, uvicorn and ONNX Runtime load when ``create_app`` or ``serve`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ServeConfig

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["ServeConfig", "create_app", "serve"]


def create_app(ws: Workspace, **kwargs: Any) -> Any:
    """The FastAPI app serving the project's model; see :func:`modelloop.serving.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(ws, **kwargs)


def serve(ws: Workspace, host: str | None = None, port: int | None = None, workers: int | None = None,
          **kwargs: Any) -> None:
    """Run the API until stopped; see :func:`modelloop.serving.launch.serve`."""
    from .launch import serve as _serve

    _serve(ws, host=host, port=port, workers=workers, **kwargs)
