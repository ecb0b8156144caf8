"""One of several `serve --workers N` processes takes connections only once its first model load has
ended: the workers share one socket, and a worker still loading answered its share of requests 503
"model not loaded yet" while the other already served (tests/serving/test_durability.py failed on it)."""

from __future__ import annotations

import asyncio
import contextlib
import types
from typing import Any

from fastapi import FastAPI

from modelloop.serving.launch import FACTORY_ENV, workers_app_from_env
from modelloop.serving.reload_files import RELOAD_DIR_ENV


def slow_loading_app() -> Any:
    """An app whose model loads in the background after its startup, as the serving app's does."""
    state = types.SimpleNamespace(runtime=None, load_error="model not loaded yet")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        async def load() -> None:
            await asyncio.sleep(0.3)
            state.runtime, state.load_error = object(), None

        task = asyncio.create_task(load())
        yield
        await task

    app = FastAPI(lifespan=lifespan)
    app.state.serving = state
    return app


def test_a_worker_starts_taking_connections_only_after_its_first_load(monkeypatch):
    monkeypatch.setenv(FACTORY_ENV, f"{__name__}:slow_loading_app")
    monkeypatch.delenv(RELOAD_DIR_ENV, raising=False)
    app = workers_app_from_env()

    async def startup() -> Any:
        async with app.router.lifespan_context(app):
            return app.state.serving.runtime    # uvicorn serves from here on

    assert asyncio.run(startup()) is not None
