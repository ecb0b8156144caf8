"""API keys and request-size limits.

* **API keys**: from env ``MODELLOOP_API_KEYS`` (comma-separated) or, when that is unset, the file
  named by ``serve.api_keys_file`` (one key a line, ``#`` comments; relative to the project folder).
  Keys are sent as ``Authorization: Bearer KEY`` and compared with ``hmac.compare_digest`` against
  every configured key (no early exit, so timing does not reveal which key nearly matched). With
  no key configured the API is open, which is why it binds 127.0.0.1 by default.
  Open even with keys: ``/v1/health``, ``/v1/ready`` (probes) and ``/metrics`` (scrapers) — they
  reveal no inputs, outputs or schema. ``/docs`` and ``/openapi.json`` are open too (they show the
  input schema but no data). Everything else (``/v1/predict``, ``/v1/feedback``, ``/v1/model``,
  ``/v1/admin/reload``) needs a key.
* **Body size**: a ``Content-Length`` above ``serve.max_body_bytes`` is refused with 413 before
  the body is read; a body without one (chunked) is counted while it streams and refused as soon
  as it passes the limit. ``serve.max_records`` (413) is checked in the predict endpoint.
* Bodies are parsed as JSON only; nothing on the request path unpickles anything.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from ..errors import ConfigError

__all__ = ["ENV_KEYS", "ApiKeys", "BodyLimitMiddleware", "BodyTooLarge", "limited_receive", "load_api_keys",
           "reject_too_large"]

ENV_KEYS = "MODELLOOP_API_KEYS"


def load_api_keys(keys_file: Path | str | None, root: Path | str = ".") -> list[str]:
    """Configured keys: env ``MODELLOOP_API_KEYS`` wins over the keys file; [] means none."""
    env = os.environ.get(ENV_KEYS)
    if env is not None and env.strip():
        return [k.strip() for k in env.split(",") if k.strip()]
    if keys_file is None:
        return []
    path = Path(keys_file)
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise ConfigError(f"serve.api_keys_file: {path} does not exist; create it with one key a line, "
                          f"or set {ENV_KEYS}")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    keys = [line for line in lines if line]
    if not keys:
        raise ConfigError(f"serve.api_keys_file: {path} holds no key; add one key a line")
    return keys


class ApiKeys:
    """Constant-time check of a presented key against every configured key."""

    def __init__(self, keys: list[str]):
        self._keys = [k.encode("utf-8") for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def verify(self, presented: str | None) -> bool:
        if not self._keys:
            return True
        given = (presented or "").encode("utf-8")
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(given, key)
        return ok and bool(presented)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than serve.max_body_bytes ({limit} bytes); "
                              "send fewer records per request")


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 from ``Content-Length`` up front, or while the body streams in."""

    def __init__(self, app: Any, max_bytes: int, on_reject: Callable[[], None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send)
                    return
                break
        limited = limited_receive(receive, limit)
        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await self._reject(send)

    async def _reject(self, send: Callable) -> None:
        if self.on_reject is not None:
            self.on_reject()
        await reject_too_large(send, self.max_bytes)


def limited_receive(receive: Callable, limit: int) -> Callable:
    """``receive`` counting the body's bytes: :class:`BodyTooLarge` once they pass ``limit``."""
    seen = 0

    async def limited() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return limited


async def reject_too_large(send: Callable, limit: int) -> None:
    """The 413 of a body above ``limit`` bytes; the connection closes (the rest of the body is not read)."""
    body = json.dumps({"detail": BodyTooLarge(limit).detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
