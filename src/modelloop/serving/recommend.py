"""Recommendation routes: ``POST /v1/recommend`` (top-k items for a user) and ``POST /v1/interactions``
(what the user did with them), served over a model whose runtime carries a ``recommender``.

``/v1/recommend`` takes ``{"user", "k" (default 10, 1..serve.max_k), "exclude_seen" (default true),
"exclude": [items], "filter": {item feature: value}}`` and answers ``{"recommendations": [{"item",
"score"}], "model", "request_id"}``, plus ``"fallback": "popular"`` for a user the model never saw. The
answer is logged like a prediction under its request id. ``/v1/interactions`` takes ``{"user", "item",
"event" (default click), "value" (a rating, optional), "request_id" (the recommendation it followed,
optional)}`` and answers 201 once the interaction is on disk (``feedback/interactions.py``); an id this
server never issued is a 404 naming ``request_id``; a model of ratings refuses a taken interaction without
a ``value`` (422 naming ``body.value``: retrain could never learn it). Bad fields are a 422 naming
``body.<field>``; keys as the other routes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from ..catalog import utcnow
from ..errors import DataError
from ..feedback.interactions import append_interaction
from .asgi import AsgiEndpoint, bearer, read_body
from .validation import ValidationProblem, describe_errors

__all__ = ["InteractionRequest", "RecommendRequest", "add_recommend_routes", "openapi_paths"]

Id = StrictStr | StrictInt


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id = Field(description="the user id (42 and \"42\" are the same user)")
    k: StrictInt = Field(10, description="how many items, 1 to serve.max_k")
    exclude_seen: StrictBool = Field(True, description="leave out the items the user took in training")
    exclude: list[Id] = Field(default_factory=list, max_length=10_000, description="items never to list")
    filter: dict[str, StrictStr | StrictInt | StrictFloat | StrictBool] = Field(
        default_factory=dict, description="item feature -> value each listed item must have")


class InteractionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id
    event: StrictStr = Field("click", min_length=1, max_length=64, description="click, view, purchase, rating...")
    value: StrictFloat | None = Field(None, description="a rating (explicit models learn it); an integer is read as a float")
    request_id: StrictStr | None = Field(None, min_length=1, max_length=64,
                                         description="the /v1/recommend (or /v1/predict) answer it followed")


def _parse(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = describe_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()],
                                 allowed=list(model.model_fields))
        raise ValidationProblem(errors) from None


def _field_problem(field: str, message: str) -> ValidationProblem:
    return ValidationProblem([{"loc": ["body", *field.split(".")], "field": field.split(".")[-1],
                               "type": "value_error", "msg": f"body.{field}: {message}"}])


def _body_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}


def openapi_paths() -> dict[str, Any]:
    """``/v1/recommend``'s entry of the OpenAPI spec (a bare ASGI route is not in FastAPI's own)."""
    def answer(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": {"type": "object"}}}}

    return {"/v1/recommend": {"post": {
        "summary": "Recommend", "operationId": "recommend", "security": [{"HTTPBearer": []}],
        "description": "The top k items for a user from the served recommender; a user it never saw gets the "
                       "most popular items and `\"fallback\": \"popular\"`.",
        **_body_of(RecommendRequest),
        "responses": {
            "200": answer('{"recommendations": [{"item", "score"}], "model", "request_id", "fallback"?}'),
            "401": answer("missing or wrong API key"),
            "404": answer("the served model does not recommend"),
            "422": answer("a field is wrong (k outside 1..serve.max_k, an unknown filter feature); `detail` names it"),
            "503": answer("no model loaded yet")}}}}


def add_recommend_routes(app: FastAPI, state: Any, keyed: list[Any]) -> None:
    """Register both routes on ``app``; ``state`` is the server's state (runtime, log, keys), ``keyed``
    the dependencies that check the API key."""

    def served() -> Any:
        rt = state.runtime
        if rt is None:
            raise HTTPException(503, f"no model loaded ({state.load_error}); retry shortly",
                                headers={"Retry-After": "1"})
        return rt

    # a bare ASGI endpoint, as /v1/predict: FastAPI's per-request dependency machinery (the key's Security
    # dependency, the Request parameter) cost more than a precomputed recommendation; documented by
    # ``openapi_paths`` (app.py's ``_openapi``)
    async def recommend(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The top k items for a user from the served recommender (unknown user: the most popular)."""
        start = time.perf_counter()
        if state.keys.enabled and not state.keys.verify(bearer(scope)):
            raise HTTPException(401, "missing or wrong API key; send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        rt = served()
        model = getattr(rt, "recommender", None)
        if model is None:
            raise HTTPException(404, f"model {rt.name}:{rt.version} does not recommend; send (user, item) "
                                     "records to /v1/predict")
        body = _parse(RecommendRequest, await read_body(receive))
        top = state.config.max_k
        if not 1 <= body.k <= top:
            raise _field_problem("k", f"must be from 1 to {top} (serve.max_k), got {body.k}")
        try:  # a slice of the user's list ranked at load (``RecommenderModel.ranked``), or the catalog scored
            items, fallback = model.recommend(body.user, body.k, exclude_seen=body.exclude_seen,
                                              exclude=body.exclude, where=body.filter)
        except DataError as exc:
            field, _, why = str(exc).partition(": ")
            raise _field_problem(field, why) from None
        rid = state.new_request_id()
        output: dict[str, Any] = {"recommendations": items, **({"fallback": fallback} if fallback else {})}
        assert state.plog is not None
        if not state.plog.add([{"request_id": rid, "name": rt.name, "version": rt.version, "at": utcnow(),
                                "inputs": body.model_dump(mode="json"), "output": output,
                                "latency_ms": (time.perf_counter() - start) * 1000.0}]):
            await run_in_threadpool(state.plog.wait_below_high_water)
        answer = to_json({**output, "model": {"name": rt.name, "version": rt.version, "variant": rt.variant},
                          "request_id": rid})
        # what Starlette's Response sends, without building one
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(answer)), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    # first in the route table: each route before it costs a regex match per request
    app.router.routes.insert(0, Route("/v1/recommend", AsgiEndpoint(recommend), methods=["POST"], name="recommend"))

    @app.post("/v1/interactions", dependencies=keyed, status_code=201, openapi_extra=_body_of(InteractionRequest), responses={
        401: {"description": "missing or wrong API key"},
        404: {"description": "request_id is not one this server issued"},
        422: {"description": "a field is wrong (a model of ratings: value is required but for impression, "
                              "skip, dismiss)"}})
    async def interactions(request: Request) -> Any:
        """Store what a user did (a click, a purchase, a rating), durable before the answer."""
        body = _parse(InteractionRequest, await request.body())
        model = getattr(state.runtime, "recommender", None)  # no model loaded yet: stored, counted at retrain
        if model is not None and model.rating_missing(body.event, body.value):
            raise _field_problem("value", model.rating_required())  # never acknowledge what retrain cannot learn
        served_by = None
        if body.request_id is not None:
            rid = body.request_id
            assert state.plog is not None
            if state.plog.is_pending(rid):
                await run_in_threadpool(state.plog.flush)
            row = await run_in_threadpool(state.ws.catalog.get_prediction, rid)
            if row is None and not state.issued(rid):
                raise HTTPException(404, f"request_id: no answer with request_id {json.dumps(rid)} was issued by "
                                         "this server; send the request_id of a /v1/recommend answer, or none")
            served_by = {"name": row["name"], "version": row["version"]} if row else None
        record = {**body.model_dump(mode="json"), "at": utcnow().isoformat(), "served_by": served_by}
        await run_in_threadpool(append_interaction, state.ws, record)
        return {"stored": True, "request_id": body.request_id}
