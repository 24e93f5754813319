"""ASGI middleware: the request body limit (enforced before and while reading) and request metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import metrics
from services.api.http.problems import MalformedRequest, PayloadTooLarge, problem_response


class BodyTooLarge(PayloadTooLarge):
    """The request body is over the limit."""


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit without reading; a chunked body is counted as it
    streams in and the read fails (413) as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await problem_response(MalformedRequest("Content-Length is not a number"), scope["path"])(
                scope, receive, send
            )
            return
        if declared is not None and declared > self.max_bytes:
            await problem_response(self._too_large(), scope["path"])(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read, so the problem handler renders it.
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body is over {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when unparseable."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


class MetricsMiddleware:
    """Count requests and time them by route template (bounded label values, unlike raw paths)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.REQUEST_SECONDS.labels(method, template).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(method, template, str(status)).inc()
