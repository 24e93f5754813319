"""Client helpers for the notifier tests: WebSocket connections, replies, quiet periods, events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from services.notifier.service import NotifierService
from shared.events import Envelope, EventType


def ws_url(service: NotifierService, query: str = "") -> str:
    """The /ws URL of an in-process notifier."""
    return f"ws://127.0.0.1:{service._settings.notifier_port}/ws{query}"


def http_url(service: NotifierService) -> str:
    """The HTTP base URL of an in-process notifier."""
    return f"http://127.0.0.1:{service._settings.notifier_port}"


@contextlib.asynccontextmanager
async def client(service: NotifierService, query: str = "", **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """A WebSocket client connected to the notifier."""
    async with connect(ws_url(service, query), open_timeout=10, close_timeout=2, **kwargs) as ws:
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def recv(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    """The next message, parsed."""
    return dict(orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s)))


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send a command and return the reply."""
    await send(ws, message)
    return await recv(ws)


async def recv_until(ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 15.0
                     ) -> list[dict[str, Any]]:
    """Messages until `done(messages)` holds."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not done(got):
            got.append(await recv(ws, timeout_s))
    return got


async def assert_quiet(ws: ClientConnection, seconds: float = 1.0) -> None:
    """Nothing more arrives for a while."""
    try:
        extra = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {extra!r}")


def job_event(kind: EventType, job: uuid.UUID, queue: str = "emails", tenant: str = "default", attempt: int = 1,
              **data: Any) -> Envelope:
    """An envelope as the services publish them."""
    return Envelope(type=kind, job_id=job, queue=queue, job_type="send", attempt=attempt, data=data, tenant=tenant)


async def sse_events(response: Any) -> AsyncIterator[tuple[str | None, str | None, dict[str, Any]]]:
    """`(id, event, data)` of each event of an SSE response (an httpx streaming response); comments skipped."""
    event_id: str | None = None
    kind: str | None = None
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield event_id, kind, dict(orjson.loads(line[6:]))
            event_id = kind = None


def mixed_events(queue: str, count: int, tenant: str = "default") -> list[Envelope]:
    """Events of several jobs and every non-progress type, so they travel on several topics and partitions."""
    kinds = (EventType.SUBMITTED, EventType.DISPATCHED, EventType.STARTED, EventType.COMPLETED,
             EventType.RETRY, EventType.FAILED, EventType.CANCELLED)
    jobs = [uuid.uuid4() for _ in range(max(1, count // 4))]
    return [job_event(kinds[i % len(kinds)], jobs[i % len(jobs)], queue=queue, tenant=tenant, n=i)
            for i in range(count)]
