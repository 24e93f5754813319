"""The notifier's HTTP app: `/ws`, `/sse` and the health routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import asyncpg
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.notifier.auth import StreamDenied, authenticate
from services.notifier.hub import Hub
from services.notifier.protocol import ProtocolError, since_of, targets_of
from services.notifier.resume import Limits
from services.notifier.settings import NotifierServiceSettings
from services.notifier.streams import Streams, WebSocketSession, sse_stream
from shared.auth.principal import Scope
from shared.http_server import Readiness, add_health_routes
from shared.telemetry import fastapi_telemetry

PoolSource = Callable[[], asyncpg.Pool]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _bad_request(detail: str) -> JSONResponse:
    body = {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": detail}
    return JSONResponse(body, status_code=400, media_type="application/problem+json")


def build_app(hub: Hub, pool: PoolSource, settings: NotifierServiceSettings, ready: Readiness) -> FastAPI:
    """Wire the routes to the hub; `pool()` is the Postgres pool used to resolve API keys."""
    app = FastAPI(
        title="Conveyor notifier", docs_url=None, redoc_url=None, openapi_url=None, telemetry=fastapi_telemetry()
    )
    add_health_routes(app, ready)
    limits = Limits(max_replay=settings.resume_max_events, max_batch_jobs=settings.max_batch_jobs,
                    timeout_s=settings.resume_timeout_s, settle_s=settings.resume_settle_s)
    streams = Streams(hub, pool, limits)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        try:
            principal = await authenticate(pool(), ws.headers, ws.query_params, auth_required=settings.auth_required)
        except StreamDenied as denied:
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(denied.response())
            else:
                await ws.close(code=1008, reason=denied.detail[:120])
            return
        await ws.accept()
        sub = hub.connect(principal.tenant, "ws", cluster=principal.can(Scope.CLUSTER))
        session = WebSocketSession(ws, streams, sub, close_timeout_s=settings.ws_close_timeout_s)
        await session.run()

    @app.get("/sse")
    async def sse(
        request: Request,
        job_id: Annotated[list[str], Query(alias="jobId")] = [],  # noqa: B006 (FastAPI copies defaults)
        queue: Annotated[list[str], Query()] = [],  # noqa: B006
        batch_id: Annotated[list[str], Query(alias="batchId")] = [],  # noqa: B006
        everything: Annotated[bool, Query(alias="all")] = False,
        since: Annotated[str | None, Query()] = None,
    ) -> Response:
        try:
            principal = await authenticate(
                pool(), request.headers, request.query_params, auth_required=settings.auth_required
            )
        except StreamDenied as denied:
            return denied.response()
        try:
            targets = targets_of(job_id, queue, everything, batch_id)
            # The browser's reconnect sends Last-Event-ID; `?since=` lets a client start from an id it kept.
            resume_from = since_of(request.headers.get("last-event-id") or since)
        except ProtocolError as exc:
            return _bad_request(str(exc))
        if len(targets) > settings.max_subscriptions:
            return _bad_request(f"too many subscriptions (at most {settings.max_subscriptions} per client)")
        stream = sse_stream(streams, principal.tenant, targets, since=resume_from,
                            keepalive_s=settings.sse_keepalive_s, cluster=principal.can(Scope.CLUSTER))
        return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)

    return app
