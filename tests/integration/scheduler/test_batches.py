"""Batch completion: one `batch_completed` on jobs.batches when the last job of a batch ends, never two."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from deploy.local.servers.kafka import KafkaBroker
from services.scheduler.store import batches as store
from shared.events import BATCHES_TOPIC, TENANT_HEADER, EventType, topic_name, utcnow
from shared.kafka.consumer import ConsumerLoop
from shared.settings import CommonSettings
from tests.fixtures.polling import eventually, poll_until
from tests.fixtures.resources import SettingsFactory
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

NOW = utcnow().isoformat()
ERROR = {"type": "permanent", "message": "no", "retryable": False}


class BatchTap:
    """Every record of this test's jobs.batches topic, from the first one."""

    def __init__(self, settings: CommonSettings) -> None:
        self.records: list[ConsumerRecord] = []
        self.loop = ConsumerLoop(settings, topics=[BATCHES_TOPIC], group_id=None, handler=self._on_batch,
                                 client_id="test-batch-tap")

    async def _on_batch(self, records: list[ConsumerRecord]) -> None:
        self.records.extend(records)

    def of(self, batch_id: uuid.UUID) -> list[dict[str, Any]]:
        """The decoded events keyed by one batch."""
        return [orjson.loads(r.value) for r in self.records if r.key == str(batch_id).encode()]

    async def wait(self, batch_id: uuid.UUID, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Until the batch has an event; returns its events."""
        return await eventually(lambda: self.of(batch_id), timeout_s=timeout_s)


@pytest.fixture
def batches_topic(kafka_broker: KafkaBroker, kafka_topics: dict[str, str], topic_prefix: str) -> str:
    """The test servers create the job topics (events.ALL_TOPICS) only; this one is made here."""
    name = topic_name(topic_prefix, BATCHES_TOPIC)
    kafka_broker.create_topics([name])
    return name


@pytest.fixture
async def batch_tap(service_settings: SettingsFactory, batches_topic: str) -> AsyncIterator[BatchTap]:
    tap = BatchTap(service_settings())
    task = asyncio.create_task(tap.loop.run(), name="test-batch-tap")
    yield tap
    tap.loop.stop()
    await asyncio.wait_for(task, 15)


async def make_batch(harness: Harness, *job_ids: uuid.UUID, tenant: str = "acme") -> uuid.UUID:
    """A job_batches row as the api writes it, and its jobs pointing at it."""
    batch_id = uuid.uuid4()
    await harness.pool.execute(
        "INSERT INTO job_batches (id, tenant, total, callback_url) VALUES ($1, $2, $3, 'http://example.test/cb')",
        batch_id, tenant, len(job_ids),
    )
    await harness.pool.execute("UPDATE jobs SET batch_id = $1 WHERE id = ANY($2::uuid[])", batch_id, list(job_ids))
    return batch_id


async def completed_at(harness: Harness, batch_id: uuid.UUID) -> Any:
    return await harness.pool.fetchval("SELECT completed_at FROM job_batches WHERE id = $1", batch_id)


async def test_the_last_job_ending_emits_one_batch_completed_even_when_redelivered(
    harness: Harness, batch_tap: BatchTap
) -> None:
    await harness.start()
    a, b, c = [await harness.insert() for _ in range(3)]
    batch_id = await make_batch(harness, a, b, c)
    await harness.submit(a, b, c)
    for job in (a, b, c):
        await harness.wait_status(job, "queued")

    await harness.publish(worker_event(EventType.COMPLETED, a, 1, result=None, startedAt=NOW, endedAt=NOW))
    await harness.publish(worker_event(EventType.FAILED, b, 1, error=ERROR, reason="permanent", startedAt=NOW,
                                       endedAt=NOW))
    await harness.wait_status(a, "completed")
    await harness.wait_status(b, "failed")
    assert await completed_at(harness, batch_id) is None and batch_tap.of(batch_id) == []

    last = worker_event(EventType.COMPLETED, c, 1, result={"ok": True}, startedAt=NOW, endedAt=NOW)
    await harness.publish(last)
    [event] = await batch_tap.wait(batch_id)
    assert event["type"] == "batch_completed" and event["schemaVersion"] == 1
    assert (event["jobId"], event["queue"], event["jobType"], event["attempt"]) == (None, None, None, None)
    assert event["data"] == {"batchId": str(batch_id), "counts": {
        "total": 3, "pending": 0, "running": 0, "completed": 2, "failed": 1, "cancelled": 0,
    }}
    done_at = await completed_at(harness, batch_id)
    assert done_at is not None and event["occurredAt"] == done_at.isoformat()
    [record] = [r for r in batch_tap.records if r.key == str(batch_id).encode()]
    assert dict(record.headers)[TENANT_HEADER] == b"acme"

    # The final event again (a redelivery), then a marker behind it on the same partition.
    await harness.publish(last, key=c)
    marker = await harness.insert()
    await harness.publish(await harness.submitted(marker), key=c)
    await harness.wait_status(marker, "queued")
    await poll_until(lambda: harness.pool.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0)
    await asyncio.sleep(0.5)  # the behaviour under test: nothing more reaches jobs.batches meanwhile
    assert len(batch_tap.of(batch_id)) == 1
    assert await completed_at(harness, batch_id) == done_at


async def test_dependents_cancelled_by_a_failure_complete_the_batch(harness: Harness, batch_tap: BatchTap) -> None:
    await harness.start()
    a = await harness.insert()
    b = await harness.insert(depends_on=[a])
    c = await harness.insert(depends_on=[b])
    batch_id = await make_batch(harness, a, b, c)
    await harness.submit(a, b, c)
    await harness.wait_status(c, "blocked")

    await harness.publish(worker_event(EventType.FAILED, a, 1, error=ERROR, reason="permanent", startedAt=NOW,
                                       endedAt=NOW))
    [event] = await batch_tap.wait(batch_id)
    assert event["data"]["counts"] == {
        "total": 3, "pending": 0, "running": 0, "completed": 0, "failed": 1, "cancelled": 2,
    }
    assert await completed_at(harness, batch_id) is not None


async def test_a_job_cancelled_by_the_api_can_end_a_batch(harness: Harness, batch_tap: BatchTap) -> None:
    await harness.start()
    a, b = await harness.insert(), await harness.insert()
    batch_id = await make_batch(harness, a, b)
    await harness.submit(a, b)
    await harness.wait_status(b, "queued")
    await harness.publish(worker_event(EventType.COMPLETED, a, 1, result=None, startedAt=NOW, endedAt=NOW))
    await harness.wait_status(a, "completed")
    # The API cancels a waiting job in its own transaction, then announces it; the scheduler ends the batch.
    await harness.pool.execute("UPDATE jobs SET status = 'cancelled', state_rank = 5 WHERE id = $1", b)
    await harness.publish(worker_event(EventType.CANCELLED, b, 1, reason="cancelled_by_user", by="api"))
    [event] = await batch_tap.wait(batch_id)
    assert event["data"]["counts"] == {
        "total": 2, "pending": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 1,
    }


async def test_a_batch_with_a_job_still_waiting_stays_open(harness: Harness) -> None:
    a = await harness.insert(status="completed")
    b = await harness.insert(status="queued")
    batch_id = await make_batch(harness, a, b)
    async with harness.pool.acquire() as conn, conn.transaction():
        assert await store.complete_batches(conn, [a]) == []
    assert await completed_at(harness, batch_id) is None


async def test_two_transactions_ending_the_last_two_jobs_at_once_complete_the_batch_once(harness: Harness) -> None:
    a = await harness.insert(status="running")
    b = await harness.insert(status="running")
    batch_id = await make_batch(harness, a, b)
    finish = "UPDATE jobs SET status = 'completed' WHERE id = $1"
    async with harness.pool.acquire() as conn_a, harness.pool.acquire() as conn_b:
        tx_a, tx_b = conn_a.transaction(), conn_b.transaction()
        await tx_a.start()
        await tx_b.start()
        await conn_a.execute(finish, a)
        await conn_b.execute(finish, b)
        # a first: it takes the batch lock and, not seeing b's uncommitted end, completes nothing.
        assert await store.complete_batches(conn_a, [a]) == []
        late = asyncio.create_task(store.complete_batches(conn_b, [b]))
        await asyncio.sleep(0.2)  # the behaviour under test: b waits on a's lock
        assert not late.done()
        await tx_a.commit()
        done = await asyncio.wait_for(late, 10)
        await tx_b.commit()
    assert [batch.id for batch in done] == [batch_id]
    assert done[0].counts == {"total": 2, "pending": 0, "running": 0, "completed": 2, "failed": 0, "cancelled": 0}
    async with harness.pool.acquire() as conn, conn.transaction():
        assert await store.complete_batches(conn, [a, b]) == []  # once, ever
