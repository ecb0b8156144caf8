"""The prediction API: FastAPI app factory and ``serve`` (uvicorn, one or several worker processes).

Endpoints (JSON in and out; keys and limits in ``security.py``):

``POST /v1/predict``  ``{"records": [{column: value, ...}, ...]}`` ->
    ``{"predictions": [{"request_id", "label", "probabilities": {label: p}}], "model": {"name",
    "version", "variant"}, "request_id"}``. Regression predictions carry ``value`` (and the same
    number as ``label``, so clients read one key for every task). Probability keys are the labels
    as text (JSON keys are strings); ``label`` keeps the label's own type. A text model's
    prediction says ``"truncated": true`` when its text was longer than the model's ``max_length``.
    **Prediction ids**: a request has one ``request_id``. A single-record request logs its
    prediction under that id; a request of n > 1 records logs ``{request_id}-0`` ...
    ``{request_id}-{n-1}``. Each prediction in the answer carries its own id: send that one to
    ``/v1/feedback``.
``POST /v1/feedback``  ``{"request_id", "label"}`` -> 201 once stored (a synchronous catalog
    write); 404 for an id this server never issued, 409 when the id already has feedback, 422 for
    a label the model does not know.
``GET /v1/health``  alive (200 while the process runs). ``GET /v1/ready``: 200 once a model is
    loaded, else 503 with the reason. ``GET /v1/model``: name, version, variant (onnx | native
    and why), input schema, metrics. ``GET /metrics``: Prometheus (``metrics.py``).
``POST /v1/admin/reload``  load the model again (the production alias by default) and swap.

Hot swap: a new model is loaded in a thread next to the old one and replaces it in one reference
assignment; requests already validated finish on the model they started with, so none is dropped.
Besides ``/v1/admin/reload``, the server polls the catalog's production alias every
``serve.reload_poll_seconds``, so ``modelloop promote`` from another process is picked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from hashlib import blake2b, sha256
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from ..catalog import utcnow
from ..errors import DataError
from ..registry import PRODUCTION
from ..workspace import Workspace
from .asgi import AsgiEndpoint as _Asgi, bearer as _bearer, read_body as _body
from .batching import MicroBatcher
from .config import ServeConfig, serve_config
from .log import PredictionLog
from ..compute.metrics import QueueCollector
from .metrics import CONTENT_TYPE_LATEST, ServingMetrics
from .security import ApiKeys, BodyLimitMiddleware, BodyTooLarge, limited_receive, load_api_keys, reject_too_large
from .validation import ValidationProblem, describe_errors

__all__ = ["create_app"]

log = logging.getLogger("modelloop.serving")
SECRET_ENV = "MODELLOOP_SERVE_SECRET"
_ENDPOINTS = {p: p for p in ("/v1/predict", "/v1/predict/image", "/v1/feedback", "/v1/health", "/v1/ready",
                             "/v1/model", "/v1/admin/reload", "/metrics", "/docs", "/openapi.json",
                             "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/recommend",
                             "/v1/interactions")}
_KEYED = frozenset({"/v1/predict", "/v1/predict/image", "/v1/feedback", "/v1/model", "/v1/admin/reload",
                    "/v1/recommend", "/v1/interactions"})  # security.py
_ERROR_KINDS = {401: "auth", 403: "auth", 404: "not_found", 405: "bad_request", 409: "conflict",
                413: "too_large", 422: "validation", 503: "not_ready"}


# ---- response models (documentation; responses are serialised by hand for speed) ----------------
class Prediction(BaseModel):
    request_id: str = Field(description="id of this prediction: send it to /v1/feedback")
    label: Any = Field(description="predicted label (regression: the predicted value)")
    probabilities: dict[str, float] | None = Field(None, description="label -> probability")
    value: float | None = Field(None, description="regression only")
    truncated: bool | None = Field(None, description="text models: present (true) when the text was cut to "
                                                     "the model's max_length tokens before scoring")
    windows: int | None = Field(None, description="text models: how many windows of the text were read (a long "
                                                  "text is read whole, in overlapping windows)")


class ModelRef(BaseModel):
    name: str
    version: int
    variant: str = Field(description="onnx | native")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelRef
    request_id: str


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64, description="a prediction id from /v1/predict")
    label: StrictStr | StrictInt | StrictFloat | StrictBool | None = Field(
        None, description="the true label (regression: the true value); or rating/correction")
    # JSON Schema's integer admits 1.0, so the schema's enum accepts it too; a boolean is not a rating.
    rating: Literal[-1, 1] | None = Field(None, description="a generated answer: +1 accepted, -1 refused")
    correction: StrictStr | None = Field(None, min_length=1, description="a generated answer's corrected text")

    @field_validator("rating", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be 1 (accepted) or -1 (refused), not a boolean")
        return value


# ---- server state ------------------------------------------------------------------------------
class ServerState:
    """Everything one server process holds: the model, the batcher, the log, the cache."""

    def __init__(self, ws: Workspace, config: ServeConfig, *, model: str | None = None,
                 api_keys: list[str] | None = None, secret: bytes | None = None):
        self.ws, self.config, self.ref = ws, config, model
        self.keys = ApiKeys(api_keys if api_keys is not None
                            else load_api_keys(config.api_keys_file, ws.root))
        env_secret = os.environ.get(SECRET_ENV)
        self.secret = secret or (bytes.fromhex(env_secret) if env_secret else secrets.token_bytes(16))
        self.metrics = ServingMetrics()
        self.metrics.add_collector(QueueCollector.of_workspace(ws))  # the project's job queue (issue 24)
        self.runtime: Any = None
        self.load_error: str | None = "model not loaded yet"
        self.cache: OrderedDict[tuple, dict] | None = OrderedDict() if config.cache_size else None
        self.batcher: MicroBatcher | None = None
        self.plog: PredictionLog | None = None
        self._reload_lock = asyncio.Lock()
        # set by a server of several processes that share one model (Ray Serve's replicas): a reload
        # (``/v1/admin/reload``, a moved alias) of every process, answered once all have swapped
        self.reload_all: Callable[[str, int | None], Awaitable[dict[str, Any]]] | None = None
        self._classes: dict[tuple[str, int], Any] = {}
        self._tasks: list[asyncio.Task] = []
        # request ids are signed with keyed BLAKE2b (one C call; a secret over 64 bytes is hashed)
        self._mac_key = self.secret if len(self.secret) <= 64 else sha256(self.secret).digest()
        self._random, self._random_at, self._random_pid = "", 0, os.getpid()

    # ---- lifecycle -------------------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        cfg, m = self.config, self.metrics
        self.batcher = MicroBatcher(max_batch_size=cfg.max_batch_size, max_wait_ms=cfg.max_wait_ms,
                                    on_batch=m.observe_batch)
        def written(rows: int, seconds: float) -> None:
            m.log_rows.inc(rows)
            m.log_pending.set(plog.pending)

        self.plog = plog = PredictionLog(self.ws.catalog, flush_ms=cfg.log_flush_ms, batch=cfg.log_batch,
                                         on_write=written)
        m.ready.set(0)
        self._tasks = [asyncio.create_task(self._watch())]
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.to_thread(self.plog.close)   # nothing answered is lost on a clean stop
            self.batcher.close()
            m.process_exit()

    async def _watch(self) -> None:
        """Load the model, then follow the production alias (or the alias in ``model``)."""
        with contextlib.suppress(HTTPException):  # the reason is in /v1/ready; retried below
            await self.reload("startup")
        interval = self.config.reload_poll_seconds
        alias = self._watched_alias()
        while interval > 0 and alias is not None:
            await asyncio.sleep(interval)
            if self.runtime is None:
                with contextlib.suppress(HTTPException):
                    await self.reload("retry")
                continue
            try:
                version = await asyncio.to_thread(self.ws.catalog.get_alias, *alias)
            except Exception as exc:  # a busy or unreachable catalog: try again next time
                log.warning("alias poll failed: %s", exc)
                continue
            if version is not None and version != self.runtime.version:
                why = f"alias {alias[1]} -> {version}"
                with contextlib.suppress(HTTPException):  # logged and counted; keeps serving
                    await (self.reload_all(why, version) if self.reload_all else self.reload(why))

    def _watched_alias(self) -> tuple[str, str] | None:
        name = self.ws.config.name
        if self.ref is None:
            return name, PRODUCTION
        ref = self.ref.strip()
        if "@" in ref:
            left, alias = ref.split("@", 1)
            return left or name, alias
        return None  # a pinned version never moves

    async def reload(self, why: str) -> dict[str, Any]:
        """Load the model next to the current one, then swap in one assignment."""
        from .runtime import load_runtime, text_threads

        threads = text_threads(self.config)
        async with self._reload_lock:
            old = self.runtime
            try:
                new = await asyncio.to_thread(load_runtime, self.ws, self.ref, text_threads=threads,
                                              serve=self.config)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("model load failed (%s): %s", why, self.load_error)
                if old is None:
                    raise HTTPException(503, f"no model could be loaded: {self.load_error}") from None
                raise HTTPException(500, f"reload failed, still serving version {old.version}: "
                                         f"{self.load_error}") from None
            self.runtime = new                        # the swap: one reference assignment
            self.load_error = None
            if old is None and not os.environ.get("MODELLOOP_NO_GC_FREEZE"):
                # everything loaded so far (libraries, the model) lives as long as the process:
                # keep it out of the cyclic GC's scans, which otherwise walk it on every full
                # collection (~4 % of a loaded server's CPU). Later reloads are not frozen, so
                # a swapped-out model can still be collected.
                gc.collect()
                gc.freeze()
            self.metrics.set_model(new.name, new.version, new.variant != "native")  # onnx, onnx_int8...
            expected = getattr(new.head, "expected_share", None)  # an anomaly head: 1 - its threshold
            if expected is not None:
                self.metrics.anomaly_expected.labels(new.name).set(expected)
            self.metrics.reloads.labels("ok").inc()
            log.info("serving %s:%s (%s) after %s", new.name, new.version, new.variant, why)
        return {"model": _ref(new), "previous": _ref(old) if old is not None else None,
                "reason": new.reason}

    # ---- request ids -------------------------------------------------------------------------------
    def new_request_id(self) -> str:
        """40 hex chars: the time in ms (12), 80 random bits (20), a 32-bit MAC (8) that proves this
        server (any of its workers) issued it.

        Time first, as in UUIDv7: consecutive ids sort together, so the prediction log's
        primary-key index grows at its end. With random ids every insert lands on a random page,
        which gets slower as the log grows (2-3x the CPU per row at 570k rows, and disk reads once
        the index outgrows memory). The random part comes from the OS generator 4 KiB at a time,
        kept as hex: one ``getrandom`` call per 409 requests (a system call lets the log and
        inference threads take the GIL from the event loop). The MAC is keyed BLAKE2b: one C call,
        where ``hmac.new`` builds two hash objects in Python (measured in the server: 27 -> 9 µs
        of the event loop's CPU per request)."""
        at = self._random_at
        if at >= len(self._random) or self._random_pid != os.getpid():  # a fork must not reuse bytes
            self._random, self._random_pid, at = os.urandom(4090).hex(), os.getpid(), 0
        self._random_at = at + 20
        base = f"{time.time_ns() // 1_000_000:012x}{self._random[at:at + 20]}"
        return base + blake2b(base.encode(), key=self._mac_key, digest_size=4).hexdigest()

    def issued(self, prediction_id: str) -> bool:
        """Whether this server's secret signed the id: 40 chars with a BLAKE2b MAC, or HMAC-SHA256
        (40 chars issued before 2026-11-24, 32 chars before 2026-11-23)."""
        if not prediction_id.isascii():  # compare_digest refuses non-ASCII str; no issued id has any
            return False
        rid, _, index = prediction_id.partition("-")
        if len(rid) not in (32, 40) or (index and not index.isdigit()):
            return False
        base, tag = rid[:-8].encode(), rid[-8:]
        if len(rid) == 40 and hmac.compare_digest(
                blake2b(base, key=self._mac_key, digest_size=4).hexdigest(), tag):
            return True
        return hmac.compare_digest(hmac.new(self.secret, base, sha256).hexdigest()[:8], tag)

    # ---- inference -------------------------------------------------------------------------------
    async def infer(self, rt: Any, records: list[dict[str, Any]], api_key: str | None = None) -> list[dict[str, Any]]:
        """``api_key``: the request's (None: keys off or none sent); a generative model's prefix cache
        is salted by it (``Runtime.for_key``)."""
        out = await self._infer(rt.for_key(api_key), records)
        cut = sum("truncated" in o for o in out)
        if cut:
            self.metrics.truncated.inc(cut)
        if out and "is_anomaly" in out[0]:  # an anomaly model's answers: alert counts and the flagged share
            self.metrics.observe_alerts(len(out), sum(o["is_anomaly"] is True for o in out))
        return out

    async def _infer(self, rt: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.batcher is not None
        if self.cache is None:
            return await self.batcher.predict(rt, records)
        keys = [(rt.name, rt.version, rt.cache_salt, json.dumps(r, sort_keys=True, separators=(",", ":")))
                for r in records]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.metrics.observe_cache(len(records) - len(missing), len(missing))
        for k, f in zip(keys, found, strict=True):
            if f is not None:
                self.cache.move_to_end(k)
        if missing:
            fresh = await self.batcher.predict(rt, [records[i] for i in missing])
            for i, out in zip(missing, fresh, strict=True):
                found[i] = out
                self.cache[keys[i]] = out
            while len(self.cache) > self.config.cache_size:
                self.cache.popitem(last=False)
        return found  # type: ignore[return-value]

    def known_labels(self, name: str, version: int) -> Any:
        """The head of a model version, which says what labels its feedback may carry."""
        key = (name, version)
        if key not in self._classes:
            from ..families.heads import head_for

            self._classes[key] = head_for(self.ws.catalog.get_model(name, version)["info"] or {})
        return self._classes[key]


def _ref(rt: Any) -> dict[str, Any]:
    return {"name": rt.name, "version": rt.version, "variant": rt.variant}


def _json(payload: Any, status: int = 200) -> Response:
    # pydantic-core's serializer (Rust): ~1 us for a prediction where json.dumps takes ~13
    return Response(to_json(payload, fallback=str), status_code=status, media_type="application/json")


# ---- the app ---------------------------------------------------------------------------------------
def create_app(ws: Workspace, *, config: ServeConfig | None = None, model: str | None = None,
               api_keys: list[str] | None = None, secret: bytes | None = None) -> FastAPI:
    """The ASGI app over ``model`` (default: the production alias, followed as it moves).

    ``config`` defaults to the project's ``serve:`` section; ``api_keys`` to env
    ``MODELLOOP_API_KEYS`` or ``serve.api_keys_file``. The model loads in the background after
    start-up: ``/v1/ready`` answers 503 until it is in memory.
    """
    cfg = config or serve_config(ws.config)
    state = ServerState(ws, cfg, model=model, api_keys=api_keys, secret=secret)
    app = FastAPI(title=f"modelloop · {ws.config.name}", version="1",
                  description="Predictions, feedback and health of the production model.",
                  lifespan=state.lifespan, **_telemetry_option(cfg.telemetry))
    app.state.serving = state
    predict = _routes(app, state)
    _errors(app, state)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    if not cfg.telemetry:  # with telemetry on, the router names each request's span: keep the full path
        app.add_middleware(PredictFastPath, endpoint=predict, state=state, cors=bool(cfg.cors_origins))
    app.openapi = lambda: _openapi(app, state)  # type: ignore[method-assign]
    return app


def _telemetry_option(enabled: bool) -> dict[str, Any]:
    """``FastAPI(telemetry=...)`` where this FastAPI has native OpenTelemetry (0.16x and later)."""
    import inspect

    if enabled or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _routes(app: FastAPI, state: ServerState) -> Callable[..., Awaitable[None]]:
    """Register every route; returns ``POST /v1/predict``'s ASGI endpoint (``PredictFastPath`` calls it)."""
    bearer = HTTPBearer(auto_error=False, description="an API key (env MODELLOOP_API_KEYS)")

    async def require_key(creds: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if state.keys.enabled and not state.keys.verify(creds.credentials if creds else None):
            raise _no_key()

    keyed = [Depends(require_key)]

    # /v1/predict is a bare ASGI endpoint: FastAPI's per-request dependency and parameter machinery,
    # and Starlette's Request object and body stream, cost more than validating and predicting one
    # record, so the hot path checks its key, reads its body and sends its answer itself. A POST
    # reaches it through ``PredictFastPath`` (before the app's middleware, doing what they do for this
    # route); the route registered here answers the other methods and the requests that path leaves to
    # the stack (CORS, telemetry). Its OpenAPI entry is written by ``_openapi`` from the served schema.
    async def predict(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Predict one or many records with the model being served."""
        start = time.perf_counter()
        if state.keys.enabled and not state.keys.verify(_bearer(scope)):
            raise _no_key()
        rt = state.runtime
        if rt is None:
            raise HTTPException(503, f"no model loaded ({state.load_error}); retry shortly",
                                headers={"Retry-After": "1"})
        try:
            body = await _body(receive)
            # a validator that decodes (images) says ``blocking``: it runs in a worker thread, off the loop
            records = (await run_in_threadpool(rt.validator.validate_json, body)
                       if getattr(rt.validator, "blocking", False) else rt.validator.validate_json(body))
        except ValidationProblem as problem:
            await _invalid(problem.errors)(scope, receive, send)
            return
        if len(records) > state.config.max_records:
            raise HTTPException(413, f"{len(records)} records is more than serve.max_records "
                                     f"({state.config.max_records}); split the request")
        await answer(scope, send, rt, records, start)

    async def answer(scope: dict[str, Any], send: Any, rt: Any, records: list[dict[str, Any]],
                     start: float) -> None:
        """Infer, log and send the predictions of validated records (both predict routes)."""
        try:
            outputs = await state.infer(rt, records, _bearer(scope) if state.keys.enabled else None)
        except Exception as exc:
            scope["modelloop.error"] = "inference"
            log.exception("inference failed on model %s:%s", rt.name, rt.version)
            raise HTTPException(500, f"inference failed: {type(exc).__name__}") from None
        rid = state.new_request_id()
        ids = [rid] if len(records) == 1 else [f"{rid}-{i}" for i in range(len(records))]
        latency_ms = (time.perf_counter() - start) * 1000.0
        at = utcnow()
        name, version, plog = rt.name, rt.version, state.plog
        assert plog is not None
        if not plog.add([{"request_id": i, "name": name, "version": version, "at": at, "inputs": rec,
                          "output": out, "latency_ms": latency_ms}
                         for i, rec, out in zip(ids, records, outputs, strict=True)]):
            # the writer is behind: wait (off the loop) to bound what kill -9 loses
            await run_in_threadpool(plog.wait_below_high_water)
        body = to_json({"predictions": [{"request_id": i, **out} for i, out in zip(ids, outputs, strict=True)],
                        "model": _ref(rt), "request_id": rid}, fallback=str)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app.router.routes.append(Route("/v1/predict", _Asgi(predict), methods=["POST"], name="predict"))

    async def predict_image(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Predict uploaded image files (``multipart/form-data``, one or several files) with an image model."""
        start = time.perf_counter()
        if state.keys.enabled and not state.keys.verify(_bearer(scope)):
            raise _no_key()
        rt = state.runtime
        if rt is None:
            raise HTTPException(503, f"no model loaded ({state.load_error}); retry shortly",
                                headers={"Retry-After": "1"})
        upload = getattr(rt.validator, "upload", None)
        if upload is None:
            raise HTTPException(404, f"model {rt.name}:{rt.version} does not read images; send JSON records "
                                     "to /v1/predict")
        ctype = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        records = await run_in_threadpool(upload, ctype, await _body(receive), state.config.max_records)
        await answer(scope, send, rt, records, start)

    app.router.routes.append(Route("/v1/predict/image", _Asgi(predict_image), methods=["POST"],
                                   name="predict_image"))

    @app.post("/v1/feedback", dependencies=keyed, status_code=201, responses={
        400: {"description": "body is not UTF-8 (FastAPI cannot decode it)"},
        404: {"description": "no prediction with this request_id was issued"},
        409: {"description": "this request_id already has feedback"}})
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Store the true label of an earlier prediction (durable before the answer)."""
        return await _feedback(state, body)

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "worker": os.getpid()}

    @app.get("/v1/ready", responses={503: {}})
    async def ready() -> Response:
        """Readiness: 200 once a model is loaded."""
        rt = state.runtime
        if rt is None:
            return _json({"ready": False, "reason": state.load_error}, 503)
        return _json({"ready": True, "model": _ref(rt)})

    @app.get("/v1/model", dependencies=keyed)
    async def model_info() -> dict[str, Any]:
        """The model being served: version, variant (onnx | native, and why), schema, metrics."""
        rt = state.runtime
        if rt is None:
            raise HTTPException(503, f"no model loaded ({state.load_error})")
        cfg = state.config
        return {**rt.describe(), "serving": {
            "max_batch_size": cfg.max_batch_size, "max_wait_ms": cfg.max_wait_ms,
            "max_records": cfg.max_records, "max_body_bytes": cfg.max_body_bytes,
            "cache_size": cfg.cache_size, "api_keys": state.keys.enabled, "worker": os.getpid()}}

    @app.post("/v1/admin/reload", dependencies=keyed)
    async def reload() -> dict[str, Any]:
        """Load the model again (the production alias unless pinned) and swap it in atomically (in every
        replica on Ray Serve)."""
        if state.reload_all is not None:
            return await state.reload_all("POST /v1/admin/reload", None)
        return await state.reload("POST /v1/admin/reload")

    from .openai import add_openai_routes

    add_openai_routes(app, state)  # generative models: /v1/chat/completions, /v1/completions, /v1/models
    from .recommend import add_recommend_routes

    add_recommend_routes(app, state, keyed)  # recommenders: /v1/recommend, /v1/interactions

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        if state.plog is not None:
            state.metrics.log_pending.set(state.plog.pending)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return predict


def _no_key() -> HTTPException:
    return HTTPException(401, "missing or wrong API key; send 'Authorization: Bearer KEY'",
                         headers={"WWW-Authenticate": "Bearer"})


async def _feedback(state: ServerState, body: FeedbackRequest) -> dict[str, Any]:
    cat, rid, m = state.ws.catalog, body.request_id, state.metrics
    assert state.plog is not None
    if state.plog.is_pending(rid):
        await run_in_threadpool(state.plog.flush)
    row = await run_in_threadpool(cat.get_prediction, rid)
    if row is None and not state.issued(rid):
        m.feedback.labels("unknown").inc()
        raise HTTPException(404, f"no prediction with request_id '{rid}'; use a request_id "
                                 "returned by /v1/predict")
    served_by = row or (_ref(state.runtime) if state.runtime is not None else None)
    head = None
    if served_by is not None:
        head = await run_in_threadpool(state.known_labels, served_by["name"], served_by["version"])
    label = body.label
    if body.rating is not None or body.correction is not None or label is None:
        from .openai import rated_label  # a rating and/or correction of a generated answer

        try:
            label = rated_label(body.rating, body.correction, body.label, row)
        except ValueError as exc:
            field = str(exc).split(":")[0].removeprefix("body.")
            raise ValidationProblem([{"loc": ["body", field], "field": field, "type": "value_error",
                                      "msg": str(exc)}]) from None
    if served_by is not None and not isinstance(label, dict):
        _check_label(label, head)
    try:
        stored = await run_in_threadpool(cat.add_feedback, rid, label, "api")
    except Exception as exc:  # a concurrent duplicate hits the unique constraint
        from sqlalchemy.exc import IntegrityError

        if not isinstance(exc, IntegrityError):
            raise
        stored = False
    if not stored:
        m.feedback.labels("duplicate").inc()
        raise HTTPException(409, f"request_id '{rid}' already has feedback; it is stored once")
    m.feedback.labels("stored").inc()
    return {"request_id": rid, "stored": True, "prediction_logged": row is not None}


def _check_label(label: Any, head: Any) -> None:
    """A label the model cannot have is a 422 shaped like every other (``ValidationProblem``)."""
    try:
        head.check_label(label, strict=True)
    except DataError as exc:
        raise _bad_label(str(exc).removeprefix("label: ")) from None


def _bad_label(text: str) -> ValidationProblem:
    return ValidationProblem([{"loc": ["body", "label"], "field": "label", "type": "label_unknown",
                               "msg": f"body.label: {text}"}])


def _errors(app: FastAPI, state: ServerState) -> None:
    # FastAPI parses a body before it runs the route's dependencies, so a keyed route whose body is
    # not JSON (400, 422) would answer a caller without the key with details of the body's schema:
    # the key is checked again here, first.
    def keyless(request: Request) -> bool:
        return request.url.path in _KEYED and not state.keys.verify(_bearer(request.scope))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if keyless(request):
            return await http_error(request, _no_key())
        errors = describe_errors(list(exc.errors()), allowed=["request_id", "label", "rating", "correction"])
        return _invalid(errors)

    @app.exception_handler(ValidationProblem)
    async def problem(request: Request, exc: ValidationProblem) -> Response:
        return _invalid(exc.errors)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _http_error(exc, exc.status_code == 400 and keyless(request))


def _http_error(exc: HTTPException, keyless: bool = False) -> Response:
    """An ``HTTPException`` as its JSON answer, ``{"detail"}`` (a 400 to a caller without the key: 401)."""
    if keyless:
        exc = _no_key()
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _invalid(errors: list[dict[str, Any]]) -> Response:
    """422 in one shape for every endpoint: ``detail`` lists the fields at fault, ``message`` sums up."""
    return _json({"detail": errors, "message": "; ".join(e["msg"] for e in errors)}, 422)


class MetricsMiddleware:
    """Pure ASGI: counts every answer by endpoint and status, latency, and errors by kind."""

    def __init__(self, app: Any, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracked(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            endpoint = _ENDPOINTS.get(scope["path"], "other")
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
            if status >= 400:
                kind = scope.get("modelloop.error") or _ERROR_KINDS.get(status, "internal")
                self.metrics.errors.labels(kind).inc()


class PredictFastPath:
    """Pure ASGI, the outermost of the app's own middleware: ``POST /v1/predict`` goes straight to its
    endpoint, every other request on through the stack.

    The stack's layers (``MetricsMiddleware``, ``BodyLimitMiddleware``, Starlette's exception middleware,
    FastAPI's exit-stack middleware, the router's regex matches) are one coroutine and one wrapped ``send``
    each: about a third of the event loop's Python per prediction in process (py-spy, 2026-12-06;
    ``benchmarks/RESULTS.md``). This path does what they
    do for that one route, with the same shared pieces: the body limit (413 from ``Content-Length``
    up front, or while a chunked body streams: ``security.reject_too_large``, ``limited_receive``), the answers
    of the app's error handlers (``HTTPException`` as ``{"detail"}``, ``ValidationProblem`` as the 422
    of every endpoint) and the request metrics (``ServingMetrics.observe_request``, errors by kind).
    Anything else raised goes up to Starlette's ``ServerErrorMiddleware`` (500), as before. A request
    with an ``Origin`` header takes the full stack when CORS is configured (``CORSMiddleware`` adds
    its headers there); a server with ``serve.telemetry`` on does not install this path."""

    def __init__(self, app: Any, *, endpoint: Callable[..., Awaitable[None]], state: ServerState, cors: bool):
        self.app, self.endpoint, self.cors = app, endpoint, cors
        self.metrics, self.limit = state.metrics, state.config.max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["path"] != "/v1/predict" or scope["method"] != "POST"
                or scope.get("root_path") or (self.cors and any(k == b"origin" for k, _ in scope["headers"]))):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0  # until the answer starts

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        limit = self.limit
        try:
            for name, value in scope["headers"]:
                if name == b"content-length":  # the server then reads no more than the declared length
                    try:
                        declared = int(value)
                    except ValueError:
                        declared = -1
                    if declared > limit:
                        await reject_too_large(tracked, limit)
                        return
                    break
            else:  # a chunked body is counted while it streams
                receive = limited_receive(receive, limit)
            try:
                await self.endpoint(scope, receive, tracked)
            except BodyTooLarge:
                if status:
                    raise
                await reject_too_large(tracked, limit)
            except HTTPException as exc:
                if status:
                    raise
                await _http_error(exc)(scope, receive, tracked)
            except ValidationProblem as problem:
                if status:
                    raise
                await _invalid(problem.errors)(scope, receive, tracked)
        finally:
            status = status or 500
            self.metrics.observe_request("/v1/predict", status, time.perf_counter() - start)
            if status >= 400:
                kind = scope.get("modelloop.error") or _ERROR_KINDS.get(status, "internal")
                self.metrics.errors.labels(kind).inc()


_PREDICT_DOC = """Predict one or many records with the model being served.

One request id per request; a single record is logged under it, n > 1 records under
`{request_id}-0` ... `{request_id}-{n-1}` (each prediction carries its own id for /v1/feedback).
Every feature column is required; send null for a missing value."""


def _openapi(app: FastAPI, state: ServerState) -> dict[str, Any]:
    """The spec, with ``/v1/predict`` built from the served model's input schema."""
    rt = state.runtime
    key = (rt.name, rt.version) if rt is not None else None
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    response = PredictResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(response.pop("$defs", {}))
    schemas["PredictResponse"] = response
    body: dict[str, Any] = {"type": "object", "required": ["records"], "properties": {
        "records": {"type": "array", "minItems": 1, "items": {"type": "object"}}}}
    if rt is not None:
        body = rt.validator.json_schema()
        schemas.update(body.pop("$defs", {}))
    body["properties"]["records"]["maxItems"] = state.config.max_records   # 413 above it
    schemas["PredictRequest"] = body
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = {
        "type": "http", "scheme": "bearer"}

    def answer(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": {"type": "object"}}}}

    spec["paths"]["/v1/predict"] = {"post": {
        "summary": "Predict", "description": _PREDICT_DOC, "operationId": "predict",
        "security": [{"HTTPBearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
        "responses": {
            "200": {"description": "one prediction per record", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
            "401": answer("missing or wrong API key"),
            "413": answer("body above serve.max_body_bytes or more than serve.max_records records"),
            "422": answer("a record does not match the input schema; `detail` names each field"),
            "503": answer("no model loaded yet")}}}
    spec["paths"]["/v1/predict/image"] = {"post": {
        "summary": "Predict images", "operationId": "predict_image", "security": [{"HTTPBearer": []}],
        "description": "Image models: one or several image files as multipart/form-data (any field name).",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "additionalProperties": {"type": "string", "format": "binary"}}}}},
        "responses": {
            "200": {"description": "one prediction per file", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
            "401": answer("missing or wrong API key"),
            "404": answer("the served model does not read images"),
            "413": answer("body above serve.max_body_bytes, more files than serve.max_records, or an image "
                          "with more pixels than allowed"),
            "415": answer("a file is not an image (named), or the body is not multipart/form-data"),
            "503": answer("no model loaded yet")}}}
    from .recommend import openapi_paths

    spec["paths"].update(openapi_paths())  # /v1/recommend: a bare ASGI route, as /v1/predict
    app.state.openapi_cache = (key, spec)
    return spec
