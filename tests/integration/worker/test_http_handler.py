"""The `http` job type against a small HTTP server started by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from deploy.local.servers import free_port
from shared.dispatch.protocol import Dispatcher
from shared.events import EventType
from shared.http_server import HttpServer
from shared.models import RetryPolicy
from tests.fixtures.resources import JobEventTap
from tests.integration.worker.conftest import WorkerSettingsFactory
from tests.integration.worker.support import job, running_worker, scheduling

S, C, R, F = EventType.STARTED, EventType.COMPLETED, EventType.RETRY, EventType.FAILED


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A client service: /ok echoes JSON, /busy answers 503 twice then 200, /missing 404."""
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    busy_calls = 0

    @app.post("/ok")
    async def ok(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"path": "/ok", "body": body, "auth": request.headers.get("x-token")})
        return {"received": body}

    @app.get("/busy")
    async def busy() -> Response:
        nonlocal busy_calls
        busy_calls += 1
        seen.append({"path": "/busy"})
        if busy_calls <= 2:
            return Response("try later", status_code=503, headers={"Retry-After": "0"})
        return Response("fine now", media_type="text/plain")

    @app.get("/missing")
    async def missing() -> Response:
        seen.append({"path": "/missing"})
        return Response("no", status_code=404)

    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await server.stop()


async def test_http_job_outcomes(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap,
    target: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = target
    slow_policy = RetryPolicy(base_delay_ms=60_000, max_delay_ms=60_000, jitter=False)
    ok = job("http", {"url": f"{base}/ok", "method": "POST", "body": {"n": 1}, "headers": {"X-Token": "t"}})
    # Retry-After: 0 overrides the minute-long policy delay.
    busy = job("http", {"url": f"{base}/busy", "timeoutMs": 2000}, max_attempts=5, retry=slow_policy)
    missing = job("http", {"url": f"{base}/missing"}, max_attempts=5)
    down = job("http", {"url": f"http://127.0.0.1:{free_port()}/x", "timeoutMs": 1000}, max_attempts=1)
    async with running_worker(worker_settings()), scheduling(dispatcher, event_tap, ok, busy, missing, down):
        await dispatcher.push([(ok, 0), (busy, 0), (missing, 0), (down, 0)])
        assert await event_tap.wait_terminal(ok.job_id) == [(S, 1), (C, 1)]
        busy_kinds = await event_tap.wait_terminal(busy.job_id)
        assert busy_kinds == [(S, 1), (R, 1), (S, 2), (R, 2), (S, 3), (C, 3)]
        assert await event_tap.wait_terminal(missing.job_id) == [(S, 1), (F, 1)]
        assert await event_tap.wait_terminal(down.job_id) == [(S, 1), (F, 1)]

    ok_result = event_tap.of(ok.job_id)[-1].data["result"]
    assert ok_result == {"status": 200, "body": {"received": {"n": 1}}, "truncated": False}
    assert {"path": "/ok", "body": {"n": 1}, "auth": "t"} in seen
    retry = next(e for e in event_tap.of(busy.job_id) if e.type is R)
    assert retry.data["error"]["type"] == "http_503" and retry.data["error"]["retryable"] is True
    assert retry.data["delayMs"] == 0
    assert event_tap.of(busy.job_id)[-1].data["result"]["body"] == "fine now"
    failed = event_tap.of(missing.job_id)[-1].data
    assert failed["reason"] == "permanent" and failed["error"]["type"] == "http_404"
    assert failed["error"]["retryable"] is False
    refused = event_tap.of(down.job_id)[-1].data
    assert refused["reason"] == "exhausted" and refused["error"]["type"] == "http_connection"
