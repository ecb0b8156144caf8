"""``modelloop serve`` with ``serve.engine: ray``: the same application as Ray Serve replicas on a cluster.

Each replica builds exactly the app one process of ``serve --workers N`` builds, from the same
spec (``launch._worker_env``: the project config, the serve settings, the model and the secret
that signs request ids) and the same factory (``launch.app_from_env``, or the dashboard's for
``--ui``), so the HTTP contract, the keys, the limits and the prediction log are the local
server's. Ray Serve's proxy listens on ``serve.host:serve.port`` and balances the requests over the
replicas; between ``serve.min_replicas`` and ``serve.max_replicas`` Ray adds replicas while requests
queue and removes idle ones.

A reload reaches every replica (:class:`ReloadBroadcast`): ``POST /v1/admin/reload`` on whichever replica
answers it, or a replica's poll seeing the production alias move (``serve.reload_poll_seconds``), starts a
generation on one small Ray actor that the server creates; every replica waits on that actor for the
next generation, swaps (loading next to the old model, so no request is dropped) and answers with the
version it now serves. The reload's answer comes once every replica has, and names them.

The cluster is ``compute.address`` (``auto``: a local Ray on 127.0.0.1, ended with the server).
Replicas read the project folder at the same path, as the ``ray`` job engine does: one machine or a
shared file system. ``/metrics`` adds up the replicas of the node that answers (a shared
``PROMETHEUS_MULTIPROC_DIR`` per node, as with ``--workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import socket
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

__all__ = ["APP_NAME", "ReloadBroadcast", "Replica", "deployment_options", "follow_reloads", "hold_until_loaded",
           "serve_on_ray"]

APP_NAME = "modelloop"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
BROADCAST_ENV = "MODELLOOP_RELOAD_ACTOR"     # the name of the app's ReloadBroadcast actor
NAMESPACE = "modelloop"

log = logging.getLogger("modelloop.serving")


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
        app = hold_until_loaded(getattr(importlib.import_module(module), name)())
        if actor := os.environ.get(BROADCAST_ENV):
            import ray

            follow_reloads(app, RayCalls(ray.get_actor(actor, namespace=NAMESPACE)))
        return app


class ReloadBroadcast:
    """The reloads every replica follows (one Ray actor per app; async, so waits cost no thread).

    A reload is a *generation*: ``start`` numbers it and records its target (a model version, or None
    for "load again"); each replica's :func:`follow_reloads` waits in ``follow`` for a generation after
    the last it saw, swaps, and acks (``ack``) with what it serves; ``answers`` waits for the acks of the
    replicas that were alive when it started. Alive: the replica called ``follow`` within
    ``lost_after`` seconds (they call again every ``FOLLOW_SECONDS``); one that left (``leave``, at its
    shutdown) or went silent is not waited for."""

    def __init__(self, lost_after: float = 30.0) -> None:
        self.lost_after = lost_after
        self.generation = 0
        self.targets: dict[int, int | None] = {}
        self.acks: dict[int, dict[str, dict[str, Any]]] = {}
        self.expected: dict[int, list[str]] = {}     # the replicas alive when the generation started
        self.contact: dict[str, float] = {}
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _alive(self) -> list[str]:
        now = time.monotonic()
        return sorted(r for r, at in self.contact.items() if now - at <= self.lost_after)

    async def register(self, replica: str) -> int:
        """A replica joins (before its first load): the generation it has, in effect, already seen."""
        self.contact[replica] = time.monotonic()
        return self.generation

    async def leave(self, replica: str) -> None:
        self.contact.pop(replica, None)
        async with self._cond():
            self._cond().notify_all()

    async def start(self, target: int | None) -> tuple[int, list[str]]:
        """A new generation, or the latest while it is still moving to the same version (the alias polls
        of several replicas see one promotion): (its number, the replicas it waits for)."""
        async with self._cond():
            g = self.generation
            if target is None or self.targets.get(g) != target or not self._pending(g, self.expected.get(g, [])):
                self.generation = g = g + 1
                self.targets[g], self.acks[g], self.expected[g] = target, {}, self._alive()
                for old in [k for k in self.acks if k < g - 20]:     # bounded
                    for book in (self.acks, self.targets, self.expected):
                        book.pop(old, None)
                self._cond().notify_all()
            return g, list(self.expected[g])

    def _pending(self, generation: int, replicas: list[str]) -> list[str]:
        got, alive = self.acks.get(generation, {}), set(self._alive())
        return [r for r in replicas if r not in got and r in alive]

    async def follow(self, replica: str, seen: int, timeout: float) -> tuple[int, int | None] | None:
        """The newest generation after ``seen`` (its number and target), or None after ``timeout`` s."""
        self.contact[replica] = time.monotonic()
        async with self._cond():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._cond().wait_for(lambda: self.generation > seen), timeout)
        self.contact[replica] = time.monotonic()
        return (self.generation, self.targets.get(self.generation)) if self.generation > seen else None

    async def ack(self, replica: str, generation: int, answer: dict[str, Any]) -> None:
        self.contact[replica] = time.monotonic()
        async with self._cond():
            for g in self.acks:          # a newer generation's swap covers the older ones still waited for
                if g <= generation:
                    self.acks[g].setdefault(replica, answer)
            self._cond().notify_all()

    async def answers(self, generation: int, replicas: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Each of ``replicas``' answer to ``generation``: ``{"version"}``, ``{"error", "version"}``, or
        ``{"error"}`` for one that left, went silent or did not answer within ``timeout`` s."""
        end = time.monotonic() + timeout
        async with self._cond():
            while self._pending(generation, replicas) and time.monotonic() < end:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._cond().wait(), min(1.0, max(0.01, end - time.monotonic())))
        got = self.acks.get(generation, {})
        return {r: got.get(r) or {"error": "left or went silent before it swapped" if r not in self._alive()
                                  else f"did not swap within {timeout:g} s"} for r in replicas}


FOLLOW_SECONDS = 5.0           # a replica's wait on the broadcast actor, renewed (its sign of life)
ANSWER_SECONDS = 300.0         # how long a reload waits for every replica's swap


class RayCalls:
    """Calls an actor's methods and awaits them (``handle.method.remote(...)``: an awaitable ref)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return lambda *args: getattr(self.handle, method).remote(*args)


def follow_reloads(app: Any, calls: Any, name: str | None = None) -> Any:
    """Make ``app`` (one replica's) follow the broadcast that ``calls`` reaches (async methods of a
    :class:`ReloadBroadcast`): its lifespan registers it and runs the follower, and its reloads
    (``/v1/admin/reload``, the alias poll) go through the broadcast (``ServerState.reload_all``)."""
    state = getattr(app.state, "serving", None)
    if state is None:
        return app
    from fastapi import HTTPException

    from .app import _ref

    me = name or f"{socket.gethostname()}:{os.getpid()}"

    async def follower(seen: int) -> None:
        while True:
            try:
                got = await calls.follow(me, seen, FOLLOW_SECONDS)
                if got is None:
                    continue
                seen, target = got
                rt = state.runtime
                if target is not None and rt is not None and rt.version == target:
                    answer: dict[str, Any] = {"version": rt.version}       # its own poll got there first
                else:
                    try:
                        await state.reload(f"reload broadcast {seen}")
                        answer = {"version": state.runtime.version}
                    except HTTPException as exc:
                        answer = {"error": str(exc.detail),
                                  "version": state.runtime.version if state.runtime is not None else None}
                await calls.ack(me, seen, answer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the actor restarting or gone: its own alias poll still runs
                log.warning("reload broadcast unreachable: %s", exc)
                await asyncio.sleep(1.0)

    async def reload_all(why: str, target: int | None) -> dict[str, Any]:
        old = state.runtime
        try:
            generation, replicas = await calls.start(target)
            log.info("reload broadcast %d (%s) to %d replicas", generation, why, len(replicas))
            answers = await calls.answers(generation, replicas, ANSWER_SECONDS)
        except Exception as exc:  # the broadcast actor is gone: this replica alone, as without it
            log.warning("reload broadcast unreachable (%s): reloading this replica only", exc)
            return {**await state.reload(why), "replicas": None}
        failed = {r: a for r, a in answers.items() if "error" in a}
        if failed:
            raise HTTPException(500, "reload failed on " + "; ".join(
                f"replica {r}: {a['error']}" + (f" (still serving version {a['version']})" if a.get("version")
                                                else "") for r, a in failed.items()))
        new = state.runtime
        return {"model": _ref(new), "previous": _ref(old) if old is not None else None,
                "reason": new.reason, "replicas": [{"replica": r, **a} for r, a in answers.items()]}

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        task = None
        try:
            seen = await calls.register(me)       # before the first load: no later reload is missed
            task = asyncio.create_task(follower(seen))
            state.reload_all = reload_all
        except Exception as exc:  # no broadcast: this replica reloads alone, on its poll or when asked
            log.warning("reload broadcast unreachable at start (%s): this replica reloads alone", exc)
        try:
            async with inner(a) as value:
                yield value
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await calls.leave(me)

    app.router.lifespan_context = lifespan
    return app


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
    # the reloads every replica follows: owned by this process, so it ends with the server
    broadcast = ray.remote(ReloadBroadcast).options(name=f"{APP_NAME}-reload", namespace=NAMESPACE, num_cpus=0,
                                                    get_if_exists=True).remote()
    try:
        serve.run(deployment.bind({**env, ENV_KEYS: ",".join(keys), BROADCAST_ENV: f"{APP_NAME}-reload"}, factory),
                  name=APP_NAME, route_prefix="/")
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
            with contextlib.suppress(Exception):
                ray.kill(broadcast)
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
