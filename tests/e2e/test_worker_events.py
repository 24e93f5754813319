"""worker_started / worker_stopped on the WebSocket, from a worker's clean stop, its start, and its death."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.support import api
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

pytestmark = pytest.mark.slow


async def _next_worker_message(ws: ClientConnection, timeout_s: float = 30) -> dict[str, Any]:
    """The next worker_started / worker_stopped message (anything else is skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = dict(orjson.loads(await ws.recv()))
            if message["type"] in ("worker_started", "worker_stopped"):
                return message


async def _worker_ids(cluster: Cluster) -> dict[str, str]:
    async with api(cluster) as client:
        r = await client.get("/workers")
        assert r.status_code == 200, r.text
        return {w["workerId"]: w["status"] for w in r.json()["items"]}


async def test_a_stop_a_start_and_a_death_each_reach_the_websocket_once(cluster: Cluster) -> None:
    [first] = await poll_until(lambda: _worker_ids(cluster), lambda ws: len(ws) == 1, timeout_s=20)
    async with connect(f"{cluster.notifier_url}/ws", additional_headers=cluster.auth_headers, open_timeout=10) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
        assert orjson.loads(await ws.recv()) == {"type": "subscribed", "all": True}

        await cluster.supervisor.kill("worker", signal.SIGTERM)  # restarted by the supervisor
        stopped = await _next_worker_message(ws)
        assert (stopped["type"], stopped["workerId"]) == ("worker_stopped", first)
        assert stopped["data"]["reason"] == "shutdown"
        assert stopped["eventId"]
        started = await _next_worker_message(ws)
        second = started["workerId"]
        assert started["type"] == "worker_started" and second != first and started["eventId"]
        assert started["data"]["concurrency"] and started["data"]["pid"]

        await cluster.supervisor.wait_ready("worker", timeout_s=30)
        killed_at = time.monotonic()
        await cluster.supervisor.kill("worker", signal.SIGKILL)
        got = [await _next_worker_message(ws), await _next_worker_message(ws)]
        gone = next(m for m in got if m["type"] == "worker_stopped")
        assert (gone["workerId"], gone["data"]["reason"]) == (second, "gone")
        assert gone["data"]["lastHeartbeatAt"]
        assert time.monotonic() - killed_at < 15  # entry expiry (one lease, 3 s here) + a sweep
        third = next(m for m in got if m["type"] == "worker_started")["workerId"]
        assert third not in (first, second)
        # Announced once: further sweeps see it still gone and say nothing.
        with pytest.raises(TimeoutError):
            await _next_worker_message(ws, timeout_s=6)
    workers = await _worker_ids(cluster)
    assert workers[second] == "gone" and workers[third] == "active" and first not in workers
