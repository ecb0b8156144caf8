"""What the bare ASGI routes (``/v1/predict``, ``/v1/predict/image``, ``/v1/recommend``) share: FastAPI's
per-request dependency machinery and Starlette's ``Request``/``Response`` objects cost more than a
precomputed answer, so these routes read the key and the body from the ASGI scope and messages
themselves, through these helpers (the app's middleware and error handlers still wrap them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import ClientDisconnect

__all__ = ["AsgiEndpoint", "bearer", "read_body"]


def bearer(scope: Mapping[str, Any]) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class AsgiEndpoint:
    """An ``async def (scope, receive, send)`` as an ASGI endpoint (Starlette would wrap a plain function
    as a request handler)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any):
        self.fn = fn

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return self.fn(scope, receive, send)


async def read_body(receive: Any) -> bytes:
    """The request body from ASGI ``receive`` (Starlette's ``Request.body`` without its stream)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the common case: the whole body in one message
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
