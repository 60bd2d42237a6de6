"""Request limits that must act before a body is read, as plain ASGI middleware (no framework needed).

``BodyLimit`` refuses a body larger than ``max_bytes`` with 413: from its ``Content-Length`` header before one byte
of it is read, or, for a body without a declared length (chunked), as soon as the bytes read pass the limit. The
server's memory per request is so bounded by the limit, whatever a client sends.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value
    return None


async def send_error(send: Send, status: int, message: str, close: bool = False) -> None:
    """Answer ``{"error": message}`` with ``status``; ``close`` asks the server to drop the connection after it
    (the unread rest of a refused body is then never received)."""
    body = json.dumps({"error": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read (see the module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self, size: str) -> str:
        return f"request body {size}; the limit is {self.max_bytes} bytes (--max-body-bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            text = declared.decode("latin-1").strip()
            if not text.isdigit():
                await send_error(send, 400, f"invalid Content-Length header {text[:40]!r}", close=True)
            elif int(text) > self.max_bytes:
                await send_error(send, 413, self._too_large(f"of {int(text)} bytes"), close=True)
            else:  # the server reads no more than the declared length
                await self.app(scope, receive, send)
            return
        # no declared length (chunked transfer): read up to the limit here, then hand the body on
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, self._too_large(f"over {self.max_bytes} bytes (chunked)"), close=True)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        await self.app(scope, replay, send)
