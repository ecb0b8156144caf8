"""``serve``: run the API with uvicorn, in this process or in ``workers`` processes sharing the port.

With several workers, uvicorn starts each one from an import string (``app_from_env``) and the
parent hands them what they need through the environment: the project config and serve settings
(``MODELLOOP_SERVE_SPEC``), the secret that signs request ids, so that feedback reaching any worker
recognises an id issued by another (``MODELLOOP_SERVE_SECRET``), and a shared
``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` adds up all workers. The parent converts the
model to ONNX once before the workers start, so they load the cached file instead of converting
side by side. Every worker appends to the same prediction log (SQLite WAL, batched inserts).

A reload reaches every worker before it answers: the workers follow a shared folder
(``reload_files.FileBroadcast``, ``MODELLOOP_RELOAD_DIR``) with the code Ray Serve's replicas use to
follow their broadcast actor (``ray_serve.follow_reloads``); uvicorn starts each worker with
``workers_app_from_env``, which builds the app with the factory named in ``MODELLOOP_SERVE_FACTORY``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..workspace import Workspace
from .config import ServeConfig, serve_config

__all__ = ["FACTORY_ENV", "SPEC_ENV", "app_from_env", "build_app", "serve", "spec_from_env", "worker_env",
           "workers_app_from_env"]

SPEC_ENV = "MODELLOOP_SERVE_SPEC"
FACTORY_ENV = "MODELLOOP_SERVE_FACTORY"      # the factory each of several workers builds its app with
log = logging.getLogger("modelloop.serving")


def serve(ws: Workspace, host: str | None = None, port: int | None = None, workers: int | None = None,
          *, config: ServeConfig | None = None, model: str | None = None,
          build: Callable[[Workspace, ServeConfig, str | None], Any] | None = None,
          factory: str = "modelloop.serving.launch:app_from_env", engine: str | None = None) -> None:
    """Serve ``model`` (the production alias by default) until SIGTERM / Ctrl-C; flushes the log on exit.

    ``build`` makes the app of one process and ``factory`` names the function each of several workers
    calls (it reads :func:`spec_from_env`): a layer above serving adds its routes this way (the dashboard
    under ``/ui``: ``dashboard.serve``) without serving importing it. ``engine`` (``serve.engine``):
    ``ray`` runs the workers' app as Ray Serve replicas instead (``ray_serve.serve_on_ray``)."""
    if engine not in (None, "local", "ray"):
        raise ConfigError(f"serve --engine: must be local or ray, got {engine!r}")
    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers, "engine": engine}.items()
                 if v is not None}
    cfg = (config or serve_config(ws.config)).model_copy(update=overrides)
    if cfg.engine == "ray":
        from .ray_serve import serve_on_ray

        serve_on_ray(ws, cfg, worker_env(ws, cfg, model), factory, warm=lambda: _warm_onnx(ws, model))
        return
    import uvicorn

    common: dict[str, Any] = {"host": cfg.host, "port": cfg.port, "access_log": False,
                              "log_level": "info", "timeout_graceful_shutdown": 10}
    if cfg.workers == 1:
        uvicorn.run((build or build_app)(ws, cfg, model), **common)
        return
    _warm_onnx(ws, model)
    from .reload_files import RELOAD_DIR_ENV

    metrics_dir = tempfile.mkdtemp(prefix="modelloop-metrics-")
    reload_dir = tempfile.mkdtemp(prefix="modelloop-reload-")
    env = {**worker_env(ws, cfg, model), "PROMETHEUS_MULTIPROC_DIR": metrics_dir, RELOAD_DIR_ENV: reload_dir,
           FACTORY_ENV: factory}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        uvicorn.run("modelloop.serving.launch:workers_app_from_env", factory=True, workers=cfg.workers, **common)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(reload_dir, ignore_errors=True)


def worker_env(ws: Workspace, cfg: ServeConfig, model: str | None) -> dict[str, str]:
    """What each worker process (or Ray Serve replica) needs to build the same app: the spec and the
    secret that signs request ids, so that feedback reaching any of them recognises an id issued by another."""
    spec = {"config": ws.config.model_dump(mode="json"), "root": str(ws.root), "serve": cfg.model_dump(mode="json"),
            "model": model}
    return {SPEC_ENV: json.dumps(spec),
            "MODELLOOP_SERVE_SECRET": os.environ.get("MODELLOOP_SERVE_SECRET") or secrets.token_hex(16)}


def spec_from_env() -> tuple[Workspace, ServeConfig, str | None]:
    """What one worker process serves, from ``MODELLOOP_SERVE_SPEC`` (set by ``serve``)."""
    from ..config import parse_config

    spec = json.loads(os.environ[SPEC_ENV])
    ws = Workspace(parse_config(spec["config"], root=spec["root"]))
    return ws, ServeConfig.model_validate(spec["serve"]), spec["model"]


def app_from_env() -> Any:
    """The app of one worker process, rebuilt from ``MODELLOOP_SERVE_SPEC``."""
    return build_app(*spec_from_env())


def workers_app_from_env() -> Any:
    """The app of one of several worker processes: ``MODELLOOP_SERVE_FACTORY``'s, following the
    server's reload folder, so that a reload reaches every worker before it answers. A worker takes
    connections only once its first model load has ended (``hold_until_loaded``): the workers share one
    socket, and a worker still loading answered its share of requests 503 "model not loaded yet" while the
    other already served (tests/serving/test_durability.py failed on it)."""
    from .ray_serve import follow_reloads, hold_until_loaded
    from .reload_files import RELOAD_DIR_ENV, FileBroadcast

    module, _, name = os.environ.get(FACTORY_ENV, "modelloop.serving.launch:app_from_env").partition(":")
    app = hold_until_loaded(getattr(importlib.import_module(module), name)())
    folder = os.environ.get(RELOAD_DIR_ENV)
    return follow_reloads(app, FileBroadcast(folder)) if folder else app


def build_app(ws: Workspace, cfg: ServeConfig, model: str | None) -> Any:
    """The prediction API of one process."""
    from .app import create_app

    return create_app(ws, config=cfg, model=model)


def _warm_onnx(ws: Workspace, model: str | None) -> None:
    """Convert (and check) once in the parent; a failure here is left for the workers to report."""
    from .runtime import load_runtime

    try:
        rt = load_runtime(ws, model)
        log.info("model %s:%s ready as %s", rt.name, rt.version, rt.variant)
    except Exception as exc:
        log.warning("model not loaded before starting workers: %s", exc)
