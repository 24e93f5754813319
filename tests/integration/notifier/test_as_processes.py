"""`python -m services.analytics` and `python -m services.notifier` as real processes, side by side."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from shared.events import EventType
from shared.kafka.producer import EventProducer
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until
from tests.integration.notifier.helpers import job_event


@pytest.mark.cluster(services=("analytics", "notifier"))
async def test_events_reach_the_audit_log_and_the_stream(
    cluster: Cluster, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    # The shared producer and pool use this test's topic prefix and database: the cluster's.
    # A real key with the `read` scope: the notifier requires one by default.
    key = await create_api_key(db_pool, "default", frozenset({Scope.READ}), "process-test")
    # Ready means the notifier holds its partitions, so nothing produced from now on is missed.
    headers = {"Authorization": f"Bearer {key}"}
    async with connect(f"{cluster.notifier_url}/ws", open_timeout=10, additional_headers=headers) as ws:
        await ws.send('{"type": "subscribe", "queue": "emails"}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "subscribed", "queue": "emails"}
        done = job_event(EventType.COMPLETED, uuid.uuid4(), durationMs=42)
        await producer.publish_events([done])

        message = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
        assert (message["type"], message["eventId"]) == ("job_completed", str(done.event_id))

        stored = "SELECT count(*) FROM job_events WHERE event_id = $1"

        async def recorded() -> bool:
            return bool(await db_pool.fetchval(stored, done.event_id))

        await poll_until(recorded, timeout_s=20, every_s=0.1)
        assert await db_pool.fetchval(stored, done.event_id) == 1
        assert await db_pool.fetchval("SELECT duration_ms_sum FROM queue_minute_stats") == 42

        async with httpx.AsyncClient(timeout=5) as http:
            for name in ("analytics", "notifier"):
                assert (await http.get(f"{cluster.url(name)}/readyz")).status_code == 200
            metrics = (await http.get(f"{cluster.url('notifier')}/metrics")).text
            assert 'conveyor_notifier_clients{transport="ws"} 1.0' in metrics

        # A clean stop tells connected clients the service is restarting.
        await cluster.supervisor.stop()
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 15)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    for name in ("analytics", "notifier"):
        assert "Traceback" not in cluster.log_tail(name, 200), cluster.log_tail(name)
