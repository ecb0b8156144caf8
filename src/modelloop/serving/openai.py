"""OpenAI-compatible routes for generative models: ``POST /v1/chat/completions``, ``POST /v1/completions``
and ``GET /v1/models``, so that any OpenAI client (the official ``openai`` package, LangChain, curl) talks
to the served model by pointing its base URL at ``/v1``.

Request fields: ``model`` (the project's name, ``name:version`` or omitted), ``messages`` (chat) or
``prompt`` (completions), ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``,
``stop`` (a string or up to 4), ``seed`` and ``stream``. Other fields OpenAI defines are accepted and
ignored. ``stream: true`` answers server-sent events, one ``chat.completion.chunk`` (or ``text_completion``)
per token with a ``delta``, the last with ``finish_reason``, then ``data: [DONE]``.

Bad input is a 400 in OpenAI's error shape, ``{"error": {"message", "type": "invalid_request_error",
"param"}}`` (plus ``detail`` like the other routes), the message naming the field: a body that is not UTF-8
JSON, an empty ``messages`` list, an unknown role, ``max_tokens`` above ``serve.max_tokens``, a prompt above
``serve.max_prompt_tokens`` or one that with ``max_tokens`` overflows the model's context. A model that is
not generative answers 400 naming ``model``. Keys as the other routes (``Authorization: Bearer``).

Each completion is logged like a prediction (inputs: the messages or prompt and the parameters; output:
text, tokens, finish reason, time to first token) under the response's ``id``, and counted in ``/metrics``
(``modelloop_generation_*``: completions by finish reason, empty ones, tokens, TTFT, tokens/s): ``POST /v1/feedback`` takes
that id with a ``rating`` and an optional ``correction``. A streaming client that disconnects stops its
generation at the next token.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..catalog import utcnow

__all__ = ["OpenAIError", "add_openai_routes", "parse_completion_request", "rated_label"]

_STOP_MAX = 4


class OpenAIError(Exception):
    """A request OpenAI's API would refuse: ``status``, the field at fault (``param``) and why."""

    def __init__(self, status: int, param: str | None, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.message, self.kind = status, param, message, kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": None}
        return JSONResponse({"error": error, "detail": self.message}, status_code=self.status)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise OpenAIError(400, key, f"{key}: must be a number from {low:g} to {high:g}, got {json.dumps(value)}")
    return float(value)


def parse_completion_request(raw: bytes, *, chat: bool, max_tokens_cap: int) -> dict[str, Any]:
    """The checked parameters of a (chat) completion request; an OpenAIError naming the field."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OpenAIError(400, "body", "body: must be UTF-8 encoded JSON") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenAIError(400, "body", f"body: not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "body", "body: must be a JSON object")
    out: dict[str, Any] = {"model": body.get("model"), "stream": bool(body.get("stream", False))}
    if chat:
        out["messages"] = _messages(body.get("messages"))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise OpenAIError(400, "prompt", "prompt: must be a non-empty string")
        out["prompt"] = prompt
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise OpenAIError(400, "max_tokens", f"max_tokens: must be a whole number >= 1, got {json.dumps(limit)}")
    if limit is not None and limit > max_tokens_cap:
        raise OpenAIError(400, "max_tokens", f"max_tokens: must be at most {max_tokens_cap} (serve.max_tokens), "
                                             f"got {limit}")
    out["max_tokens"] = limit
    out["temperature"] = _number(body, "temperature", 1.0, 0.0, 2.0)
    out["top_p"] = _number(body, "top_p", 1.0, 0.0, 1.0)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > _STOP_MAX or not all(isinstance(s, str) and s for s in stops):
        raise OpenAIError(400, "stop", f"stop: must be a string or a list of up to {_STOP_MAX} non-empty strings")
    out["stop"] = stops
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise OpenAIError(400, "seed", f"seed: must be a whole number, got {json.dumps(seed)}")
    out["seed"] = seed
    return out


def _messages(value: Any) -> list[dict[str, str]]:
    from ..families.generative.data import ROLES

    if not isinstance(value, list) or not value:
        raise OpenAIError(400, "messages", "messages: must be a non-empty list of {role, content} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise OpenAIError(400, f"messages[{i}]", f"messages[{i}]: must be an object with role and content")
        role = m.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ROLES:
            raise OpenAIError(400, f"messages[{i}].role", f"messages[{i}].role: must be one of "
                                                          f"{', '.join(ROLES)}, got {json.dumps(role)}")
        content = m.get("content")
        if isinstance(content, list):  # content parts: the text ones
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            content = "".join(p for p in parts if isinstance(p, str)) if len(parts) == len(content) else None
        if not isinstance(content, str):
            raise OpenAIError(400, f"messages[{i}].content", f"messages[{i}].content: must be text")
        out.append({"role": str(role), "content": content})
    return out


def add_openai_routes(app: FastAPI, state: Any) -> None:
    """Register the three routes on ``app``; ``state`` is the server's state (runtime, keys, log)."""

    def engine_of(request: Request, model: Any) -> tuple[Any, Any]:
        if state.keys.enabled and not state.keys.verify(_bearer(request)):
            raise OpenAIError(401, None, "missing or wrong API key; send 'Authorization: Bearer KEY'",
                              "authentication_error")
        rt = state.runtime
        if rt is None:
            raise OpenAIError(503, None, f"no model loaded ({state.load_error}); retry shortly", "server_error")
        engine = getattr(rt, "engine", None)
        if engine is None:
            # no generative model exists here: OpenAI's answer to a model it does not serve
            raise OpenAIError(404, "model", f"model: {rt.name} v{rt.version} is a {rt.head.name} model, not a "
                                            "generative one; use POST /v1/predict", "not_found_error")
        if model not in (None, "", rt.name, f"{rt.name}:{rt.version}"):
            raise OpenAIError(404, "model", f"model: this server serves '{rt.name}' (version {rt.version}), "
                                            f"got {json.dumps(model)}", "not_found_error")
        return rt, engine

    async def complete(request: Request, chat: bool) -> Response:
        try:
            rt, engine = engine_of(request, None)
            params = parse_completion_request(await request.body(), chat=chat,
                                              max_tokens_cap=state.config.max_tokens)
            engine_of(request, params["model"])
            ids = engine.chat_ids(params["messages"]) if chat else engine.text_ids(params["prompt"])
            params["max_tokens"] = params["max_tokens"] or min(state.config.max_tokens, rt.native.max_new_tokens
                                                               if hasattr(rt.native, "max_new_tokens") else 64)
            _check_length(len(ids), params["max_tokens"], engine.context, state.config.max_prompt_tokens,
                          "messages" if chat else "prompt")
        except OpenAIError as exc:
            return exc.response()
        rid = state.new_request_id()
        call = _Call(rt, engine, ids, params, chat, rid)  # the id /v1/feedback takes
        call.api_key = _bearer(request) if state.keys.enabled else None  # its prefix cache salt (Engine)
        if params["stream"]:
            return StreamingResponse(call.events(state), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": call.id})
        await run_in_threadpool(call.run_all)
        await call.log(state)
        return JSONResponse(call.final_body())

    refusals: dict[int | str, dict[str, Any]] = {
        400: {"description": "a malformed request, naming the field (OpenAI's error body)"},
        401: {"description": "missing or wrong API key"},
        404: {"description": "the server does not serve this model, or its model is not generative"},
        503: {"description": "no model loaded yet"}}

    @app.post("/v1/chat/completions", tags=["openai"], responses=refusals)
    async def chat_completions(request: Request) -> Response:
        """OpenAI-compatible chat completion (``stream: true`` for server-sent events)."""
        return await complete(request, True)

    @app.post("/v1/completions", tags=["openai"], responses=refusals)
    async def completions(request: Request) -> Response:
        """OpenAI-compatible text completion of a raw prompt (no chat template)."""
        return await complete(request, False)

    @app.get("/v1/models", tags=["openai"], responses={401: refusals[401]})
    async def models(request: Request) -> Response:
        """The served model, as OpenAI lists models."""
        if state.keys.enabled and not state.keys.verify(_bearer(request)):
            return OpenAIError(401, None, "missing or wrong API key; send 'Authorization: Bearer KEY'",
                               "authentication_error").response()
        rt = state.runtime
        data = [] if rt is None else [{"id": rt.name, "object": "model", "created": int(rt.loaded_at),
                                       "owned_by": "modelloop", "version": rt.version, "head": rt.head.name}]
        return JSONResponse({"object": "list", "data": data})


def _check_length(n_prompt: int, max_tokens: int, context: int, cap: int | None, field: str) -> None:
    if cap is not None and n_prompt > cap:
        raise OpenAIError(400, field, f"{field}: the prompt is {n_prompt} tokens, more than serve.max_prompt_tokens "
                                      f"({cap})")
    if n_prompt + max_tokens > context:
        raise OpenAIError(400, field, f"{field}: the prompt is {n_prompt} tokens; with max_tokens {max_tokens} that "
                                      f"exceeds the model's context of {context} tokens (shorten the prompt or "
                                      "lower max_tokens)")


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class _Call:
    """One completion: decodes in a worker thread, hands steps to the event loop, logs the result."""

    def __init__(self, rt: Any, engine: Any, ids: list[int], params: dict[str, Any], chat: bool, cid: str):
        self.rt, self.engine, self.ids, self.params, self.chat, self.id = rt, engine, ids, params, chat, cid
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.text, self.tokens, self.finish = "", 0, "length"
        self.ttft_ms: float | None = None
        self.cancelled = threading.Event()
        self.api_key: str | None = None

    def _steps(self) -> Any:
        p = self.params
        return self.engine.stream(self.ids, max_tokens=p["max_tokens"], temperature=p["temperature"],
                                  top_p=p["top_p"], seed=p["seed"], stop=p["stop"],
                                  should_stop=self.cancelled.is_set, api_key=self.api_key)

    def _take(self, step: Any) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = round((time.perf_counter() - self.started) * 1000.0, 2)
        if step.token is not None:
            self.tokens += 1
        self.text += step.delta
        if step.finish_reason is not None:
            self.finish = step.finish_reason

    def run_all(self) -> None:
        for step in self._steps():
            self._take(step)

    def _chunk(self, delta: str | None, finish: str | None, first: bool = False) -> str:
        if self.chat:
            d: dict[str, Any] = {"role": "assistant", "content": ""} if first else \
                ({"content": delta} if delta else {})
            choice: dict[str, Any] = {"index": 0, "delta": d, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        body = {"id": self.id, "object": obj, "created": self.created, "model": self.rt.name, "choices": [choice]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def events(self, state: Any) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                for step in self._steps():
                    loop.call_soon_threadsafe(queue.put_nowait, step)
            except Exception as exc:  # reported in the stream, then the stream ends
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = threading.Thread(target=produce, name=f"generate-{self.id[-8:]}", daemon=True)
        try:
            if self.chat:
                yield self._chunk(None, None, first=True)
            worker.start()
            while True:
                step = await queue.get()
                if step is None:
                    break
                if isinstance(step, Exception):
                    yield f"data: {json.dumps({'error': {'message': f'generation failed: {type(step).__name__}'}})}\n\n"
                    break
                self._take(step)
                if step.delta:
                    yield self._chunk(step.delta, None)
            yield self._chunk(None, "length" if self.finish == "length" else "stop")
            yield "data: [DONE]\n\n"
        finally:
            self.cancelled.set()  # a client gone mid-stream: the worker stops at its next token
            await self.log(state)

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": len(self.ids), "completion_tokens": self.tokens,
                "total_tokens": len(self.ids) + self.tokens}

    def final_body(self) -> dict[str, Any]:
        finish = "length" if self.finish == "length" else "stop"
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": self.text},
                                      "finish_reason": finish, "logprobs": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": self.text, "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.rt.name,
                "choices": [choice], "usage": self.usage()}

    async def log(self, state: Any) -> None:
        """The prediction log row: inputs (messages or prompt, parameters), answer, tokens, TTFT."""
        p = self.params
        inputs = {("messages" if self.chat else "prompt"): p["messages" if self.chat else "prompt"],
                  **{k: p[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed", "stream")}}
        shape = getattr(self.rt.native, "shape_", None)
        # the training table's input column of a generative model: the monitor compares it, a retrain learns it
        if shape is not None:
            from ..families.generative.feedback import shape_inputs

            inputs.update(shape_inputs(shape, inputs))
        output = {"text": self.text, "label": self.text, "finish_reason": self.finish, "prompt_tokens": len(self.ids),
                  "completion_tokens": self.tokens, "ttft_ms": self.ttft_ms}
        seconds = time.perf_counter() - self.started
        row = {"request_id": self.id, "name": self.rt.name, "version": self.rt.version, "at": utcnow(),
               "inputs": inputs, "output": output, "latency_ms": seconds * 1000.0}
        metrics = getattr(state, "metrics", None)
        if metrics is not None:  # /metrics: tokens/s, time to first token, empty and truncated answers
            metrics.observe_generation(self.finish, self.tokens, not self.text.strip(),
                                       None if self.ttft_ms is None else self.ttft_ms / 1000.0, seconds)
        if state.plog is not None and not state.plog.add([row]):
            await run_in_threadpool(state.plog.wait_below_high_water)


def rated_label(rating: int | None, correction: str | None, label: Any, row: dict[str, Any] | None) -> Any:
    """What ``POST /v1/feedback`` stores for a rated generated answer: the correction when there is one,
    the served answer itself when it was accepted (``rating: 1``), else ``{"rating": -1}`` (refused, no
    better answer given: kept, but never learned from). A ValueError says what is missing."""
    if rating == 0:
        raise ValueError("body.rating: must be 1 (accepted) or -1 (refused), got 0")
    if correction is not None:
        return correction
    if rating == 1:
        answer = ((row or {}).get("output") or {}).get("text")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError("body.rating: an accepted answer must be a logged generated one; send correction")
        return answer
    if rating == -1:
        return {"rating": -1}
    if label is None:
        raise ValueError("body.label: required, or a rating (1 | -1) with an optional correction")
    return label
