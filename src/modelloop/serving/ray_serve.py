"""``modelloop serve`` with ``serve.engine: ray``: the same application as Ray Serve replicas on a cluster.

Each replica builds exactly the app one process of ``serve --workers N`` builds, from the same
spec (``launch._worker_env``: the project config, the serve settings, the model and the secret
that signs request ids) and the same factory (``launch.app_from_env``, or the dashboard's for
``--ui``), so the HTTP contract, the keys, the limits and the prediction log are the local
server's. Ray Serve's proxy listens on ``serve.host:serve.port`` and balances the requests over the
replicas; between ``serve.min_replicas`` and ``serve.max_replicas`` Ray adds replicas while requests
queue and removes idle ones. A promotion reaches every replica through the app's own poll of the
production alias (``serve.reload_poll_seconds``), each swapping without dropping a request;
``POST /v1/admin/reload`` reaches the one replica that answers it.

The cluster is ``compute.address`` (``auto``: a local Ray on 127.0.0.1, ended with the server).
Replicas read the project folder at the same path, as the ``ray`` job engine does: one machine or a
shared file system. ``/metrics`` adds up the replicas of the node that answers (a shared
``PROMETHEUS_MULTIPROC_DIR`` per node, as with ``--workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..compute.lifetime import sigterm_interrupts
from ..compute.ray_engine import connect_ray
from ..errors import ConfigError
from ..workspace import Workspace
from .config import ServeConfig
from .security import ENV_KEYS, load_api_keys

__all__ = ["APP_NAME", "Replica", "deployment_options", "hold_until_loaded", "serve_on_ray"]

APP_NAME = "modelloop"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Replica:
    """One Ray Serve replica: sets the spec's environment, then builds the app with ``factory``
    (``module:function``) when Ray asks for it (``__serve_build_asgi_app__``), after this constructor."""

    def __init__(self, env: dict[str, str], factory: str) -> None:
        os.environ.update(env)
        if metrics := os.environ.get(METRICS_ENV):
            os.makedirs(metrics, exist_ok=True)      # a node other than the server's has no such folder yet
        self.factory = factory

    def __serve_build_asgi_app__(self) -> Any:
        module, _, name = self.factory.partition(":")
        return hold_until_loaded(getattr(importlib.import_module(module), name)())


def hold_until_loaded(app: Any) -> Any:
    """Make ``app``'s startup end only once its first model load has ended (loaded, or failed with its
    reason). Ray Serve routes requests to a replica as soon as its startup has run, and the server loads
    its model in the background: a replica that Ray adds while requests queue would otherwise answer
    them 503 "no model loaded" for the seconds of its load."""
    state = getattr(app.state, "serving", None)
    if state is None:
        return app
    inner, before = app.router.lifespan_context, state.load_error    # before: "model not loaded yet"

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as value:
            while state.runtime is None and state.load_error == before:
                await asyncio.sleep(0.05)
            yield value

    app.router.lifespan_context = lifespan
    return app


def deployment_options(cfg: ServeConfig, metrics_dir: str | None = None) -> dict[str, Any]:
    """``serve.deployment`` options: a fixed count of replicas, or Ray's autoscaling between the bounds.
    A replica takes up to ``max_batch_size`` requests at once, which its micro-batcher groups."""
    actor: dict[str, Any] = {"num_cpus": cfg.replica_cpus}
    if metrics_dir:        # set before the replica's process imports prometheus_client, which reads it then
        actor["runtime_env"] = {"env_vars": {METRICS_ENV: metrics_dir}}
    opts: dict[str, Any] = {"name": APP_NAME, "ray_actor_options": actor,
                            "max_ongoing_requests": max(5, cfg.max_batch_size)}
    if cfg.min_replicas == cfg.max_replicas:
        opts["num_replicas"] = cfg.min_replicas
    else:
        opts["autoscaling_config"] = {"min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
                                      "initial_replicas": cfg.min_replicas}
    return opts


def serve_on_ray(ws: Workspace, cfg: ServeConfig, env: dict[str, str], factory: str,
                 warm: Callable[[], None] | None = None) -> None:
    """Deploy the app on ``compute.address``'s cluster and keep it up until SIGTERM / Ctrl-C; then
    delete it (and stop the local Ray that ``auto`` started). ConfigError (exit 2) for ``--workers``
    with this engine, a keys file that does not exist, an address that does not answer."""
    if cfg.workers > 1:
        raise ConfigError(f"serve.workers: {cfg.workers} processes with serve.engine: ray; Ray Serve's replicas are "
                          "the processes: set serve.min_replicas / serve.max_replicas instead")
    keys = load_api_keys(cfg.api_keys_file, ws.root)    # the file is read here, once: replicas get the keys
    address = ws.config.compute.address
    ray = connect_ray(address)
    serve = _ray_serve()
    if warm is not None:
        warm()
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    _check_listening(cfg, address)
    metrics_dir = tempfile.mkdtemp(prefix="modelloop-metrics-")
    deployment = serve.deployment(serve.ingress()(Replica), **deployment_options(cfg, metrics_dir))
    try:
        serve.run(deployment.bind({**env, ENV_KEYS: ",".join(keys)}, factory), name=APP_NAME, route_prefix="/")
        replicas = (f"{cfg.min_replicas}" if cfg.min_replicas == cfg.max_replicas
                    else f"{cfg.min_replicas}-{cfg.max_replicas}")
        print(f"modelloop serve: {replicas} Ray Serve replicas of {ws.config.name} at http://{cfg.host}:{cfg.port} "
              f"(Ray cluster {address}); Ctrl-C stops", file=sys.stderr, flush=True)
        with sigterm_interrupts():
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            _delete(serve, address)
        finally:
            if address == "auto":
                ray.shutdown()
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _delete(serve: Any, address: str, wait: float = 30.0) -> None:
    """Delete the app (its replicas stop gracefully: the prediction log is flushed), and Serve itself when
    no application is left (its proxy too: the next server may ask for another port). Bounded: Ctrl-C in
    a terminal, or a signal to the process group, also reaches the local Ray that ``auto`` started, and a
    dead Serve controller never answers; the server then leaves without it."""
    done = threading.Event()

    def run() -> None:
        try:
            serve.delete(APP_NAME)
            if address == "auto" or not serve.status().applications:
                serve.shutdown()
        except Exception as exc:  # the cluster went away first
            print(f"modelloop serve: Ray Serve did not delete the app: {exc}", file=sys.stderr)
        finally:
            done.set()

    threading.Thread(target=run, name="modelloop-serve-delete", daemon=True).start()
    if not done.wait(wait):
        print(f"modelloop serve: Ray Serve did not confirm the app's deletion within {wait:g} s; leaving "
              f"(on a running cluster: `serve delete {APP_NAME}`)", file=sys.stderr)


def _check_listening(cfg: ServeConfig, address: str) -> None:
    """ConfigError when the cluster's Ray Serve was already running on another host or port: its proxy
    is one per cluster and keeps its own (Ray only logs that the new options are ignored)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    http = client.http_config if client is not None else None
    if http is not None and (http.host, http.port) != (cfg.host, cfg.port):
        raise ConfigError(f"serve.port: Ray Serve on the cluster {address} already listens on http://{http.host}:"
                          f"{http.port}, not {cfg.host}:{cfg.port}; set serve.host/serve.port to that, or stop it "
                          "first with `serve shutdown`")


def _ray_serve() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise ConfigError(f"serve.engine: ray needs Ray Serve ({exc.name or exc} is missing): "
                          "pip install 'modelloop[ray]'") from None
    return serve
