"""worker_started / worker_stopped from the `workers` topic reach `all` subscribers that hold the `cluster` scope."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import httpx
import orjson

from shared import worker_events
from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from shared.events import utcnow
from shared.kafka.producer import EventProducer, OutgoingMessage
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import assert_quiet, client, http_url, recv, request


async def _sse_first(notifier_url: str, token: str, into: asyncio.Queue[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=notifier_url, timeout=30) as http, \
            http.stream("GET", "/sse", params={"all": "true", "token": token}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                await into.put(dict(orjson.loads(line[len("data: "):])))


async def test_worker_events_reach_cluster_holders_subscribed_to_everything(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    operator = await create_api_key(db_pool, "default", frozenset({Scope.READ, Scope.CLUSTER}), "operator")
    other_operator = await create_api_key(db_pool, "other", frozenset({Scope.READ, Scope.CLUSTER}), "their-operator")
    reader = await create_api_key(db_pool, "default", frozenset({Scope.READ}), "reader")
    started = worker_events.started(
        "host-1", {"hostname": "host", "pid": 1, "queues": ["q"], "concurrency": 5}, at=utcnow()
    )
    stopped = worker_events.stopped("host-1", worker_events.StopReason.GONE, at=utcnow(), last_heartbeat_at=utcnow())
    async with start_notifier() as notifier:
        sse: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        async with (
            client(notifier, f"?token={operator}") as ops,
            client(notifier, f"?token={other_operator}") as theirs,
            client(notifier, f"?token={reader}") as plain,
            client(notifier, f"?token={operator}") as by_queue,
        ):
            for ws in (ops, theirs, plain):
                assert await request(ws, {"type": "subscribe", "all": True}) == {"type": "subscribed", "all": True}
            await request(by_queue, {"type": "subscribe", "queue": "q"})
            reading = asyncio.create_task(_sse_first(http_url(notifier), operator, sse))
            try:
                assert (await asyncio.wait_for(sse.get(), 10))["type"] == "subscribed"
                await producer.publish([worker_events.message(started), worker_events.message(stopped)])
                # Junk on the topic is skipped, never delivered.
                await producer.publish([OutgoingMessage("workers", b"x", b'{"type": "nonsense"}', [])])
                for ws in (ops, theirs):  # workers are shared by every tenant: each tenant's operators hear
                    got = sorted([await recv(ws), await recv(ws)], key=lambda m: str(m["type"]))
                    assert got[0] == {
                        "type": "worker_started", "workerId": "host-1", "eventId": started["eventId"],
                        "occurredAt": started["occurredAt"], "data": started["data"],
                    }
                    assert (got[1]["type"], got[1]["eventId"]) == ("worker_stopped", stopped["eventId"])
                    assert got[1]["data"]["reason"] == "gone"
                over_sse = [await asyncio.wait_for(sse.get(), 10) for _ in range(2)]
                assert {m["eventId"] for m in over_sse} == {started["eventId"], stopped["eventId"]}
                await assert_quiet(plain, 1.0)  # no `cluster` scope: the registry is not its business
                await assert_quiet(by_queue, 0.2)  # not subscribed with `all`
                await assert_quiet(ops, 0.2)
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading
