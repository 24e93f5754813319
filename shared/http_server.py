"""An in-process uvicorn server that leaves signals to the service lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.telemetry import fastapi_telemetry

Readiness = Callable[[], Awaitable[bool]]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # run_service owns SIGTERM/SIGINT; uvicorn must not swallow or re-raise them.
        yield


class HttpServer:
    """Serve an ASGI app on host:port until `stop()`."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
            ws_max_size=1024 * 1024, timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> asyncio.Task[None]:
        """Bind and start serving; returns the serving task (owned by the caller)."""
        self._task = asyncio.create_task(self._server.serve(), name=f"http:{self._server.config.port}")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surfaces a bind error
                raise RuntimeError("http server exited during start")
            await asyncio.sleep(0.01)
        return self._task

    async def watch(self) -> None:
        """Run as the owner's task: returns when `stop()` ended the server, raises if it died by itself."""
        if self._task is None:
            raise RuntimeError("watch() before start()")
        # Shielded: cancelling the watcher on shutdown must not cancel the server mid-stop.
        await asyncio.shield(self._task)
        if not self._stopping:
            raise RuntimeError(f"the HTTP server on port {self._server.config.port} stopped by itself")

    async def stop(self) -> None:
        """Stop accepting, close connections, wait (bounded)."""
        self._stopping = True
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout=8)
        if not self._task.done():
            self._task.cancel()
        self._task = None


def add_health_routes(app: FastAPI, ready: Readiness) -> None:
    """`/healthz` (process alive), `/readyz` (dependencies reachable), `/metrics` (Prometheus).

    Open on purpose, with auth on (DESIGN §10): orchestrators and Prometheus probe them without a
    key, and they carry no job data (process state, aggregate counters).
    """

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = await ready()
        return Response(
            content=b'{"status":"ready"}' if ok else b'{"status":"not ready"}',
            status_code=200 if ok else 503,
            media_type="application/json",
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def health_app(ready: Readiness) -> FastAPI:
    """A bare app with only the health routes (scheduler, worker, analytics)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, telemetry=fastapi_telemetry())
    add_health_routes(app, ready)
    return app
