"""callbackUrl webhooks (DESIGN §5) from a real notifier, fed by real topics, to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from services.notifier.service import NotifierService
from shared import events
from shared.events import EventType
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.webhooks import ensure_secret, verify
from tests.fixtures.polling import eventually, poll_until
from tests.fixtures.webhook_receiver import running_receiver
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import client, job_event, recv_until, request

# Retries within a second (the default base is 30 s); a due delivery is looked for every 0.2 s.
FAST_RETRIES: dict[str, Any] = {"webhook_retry_base_s": 0.3, "webhook_poll_s": 0.2, "auth_required": False}

INSERT_JOB = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, callback_url)
VALUES ($1, $2, 'emails', 'send', 'completed', 5, '{}', 3, $3)
"""
INSERT_BATCH = "INSERT INTO job_batches (id, tenant, total, callback_url) VALUES ($1, $2, 1, $3)"
DELIVERIES = "SELECT * FROM webhook_deliveries WHERE job_id = $1 OR batch_id = $1 ORDER BY created_at"


@contextlib.asynccontextmanager
async def webhook_notifier(start_notifier: NotifierFactory, **overrides: Any) -> AsyncIterator[NotifierService]:
    """A notifier whose webhook consumer holds its partitions (it starts at the newest offsets)."""
    async with start_notifier(**(FAST_RETRIES | overrides)) as service:
        assert service.webhook_consumer is not None
        await asyncio.wait_for(service.webhook_consumer.assigned.wait(), 30)
        yield service


async def job_with_callback(pool: asyncpg.Pool, url: str, tenant: str = "default") -> uuid.UUID:
    job_id = uuid.uuid4()
    await pool.execute(INSERT_JOB, job_id, tenant, url)
    return job_id


async def deliveries(pool: asyncpg.Pool, owner: uuid.UUID) -> list[asyncpg.Record]:
    return list(await pool.fetch(DELIVERIES, owner))


async def settled(pool: asyncpg.Pool, owner: uuid.UUID, state: str, timeout_s: float = 20.0) -> asyncpg.Record:
    """The one delivery of a job or batch once it reached `state`."""
    rows = await poll_until(lambda: deliveries(pool, owner), lambda rs: len(rs) == 1 and rs[0]["state"] == state,
                            timeout_s=timeout_s)
    return rows[0]


def signed_time(header: str) -> int:
    return int(dict(part.split("=", 1) for part in header.split(","))["t"])


async def test_a_completed_job_gets_one_signed_post(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier):
        job_id = await job_with_callback(db_pool, receiver.url("/hooks"))
        completed = job_event(EventType.COMPLETED, job_id, result={"sent": 3}, durationMs=40)
        await producer.publish_events([job_event(EventType.STARTED, job_id), completed])

        calls = await eventually(lambda: receiver.to("/hooks"), timeout_s=20)
        row = await settled(db_pool, job_id, "delivered")
        await asyncio.sleep(1.0)  # nothing more comes: one event, one delivery, one try
        assert len(receiver.to("/hooks")) == 1
        call = calls[0]
        secret = await ensure_secret(db_pool, "default")
        assert verify(secret, call.signature, call.body)
        assert abs(signed_time(call.signature) - time.time()) < 60
        assert call.event == "completed" and call.delivery == str(row["id"])
        assert call.headers["content-type"] == "application/json"
        assert orjson.loads(call.body) == completed.to_wire()
        assert not verify(secret + "x", call.signature, call.body)
        assert [a["status"] for a in row["attempts"]] == [200]
        assert row["event_type"] == "completed" and row["event_id"] == completed.event_id


async def test_a_500_is_retried_with_the_same_delivery_id_and_a_fresh_signature(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier):
        receiver.statuses["/flaky"] = [500, 200]
        receiver.delays["/flaky"] = 1.1  # so the retry is signed in a later second than the first try
        job_id = await job_with_callback(db_pool, receiver.url("/flaky"))
        await producer.publish_events([job_event(EventType.FAILED, job_id, reason="permanent")])

        row = await settled(db_pool, job_id, "delivered")
        first, second = receiver.to("/flaky")
        secret = await ensure_secret(db_pool, "default")
        assert first.delivery == second.delivery == str(row["id"])
        assert first.body == second.body and first.event == second.event == "failed"
        assert verify(secret, first.signature, first.body) and verify(secret, second.signature, second.body)
        assert signed_time(second.signature) > signed_time(first.signature)
        assert first.signature != second.signature
        attempts = row["attempts"]
        assert [(a["status"], a.get("error")) for a in attempts] == [(500, "HTTP 500"), (200, None)]
        assert all(a["durationMs"] >= 1000 and a["at"] for a in attempts)


async def test_a_delivery_fails_after_its_last_try(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier, webhook_max_attempts=3):
        receiver.statuses["/down"] = [503]
        job_id = await job_with_callback(db_pool, receiver.url("/down"))
        await producer.publish_events([job_event(EventType.CANCELLED, job_id, reason="cancelled_by_user")])
        row = await settled(db_pool, job_id, "failed")
        assert [a["status"] for a in row["attempts"]] == [503, 503, 503]
        assert len({c.delivery for c in receiver.to("/down")}) == 1 and len(receiver.to("/down")) == 3


async def test_a_batch_callback_gets_batch_completed(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier):
        batch_id = uuid.uuid4()
        await db_pool.execute(INSERT_BATCH, batch_id, "acme", receiver.url("/batch"))
        doc = {
            "eventId": str(uuid.uuid4()), "type": "batch_completed", "schemaVersion": 1,
            "occurredAt": events.utcnow().isoformat(), "jobId": None, "queue": None, "jobType": None,
            "attempt": None, "data": {"batchId": str(batch_id), "counts": {"total": 1, "completed": 1}},
        }
        await producer.publish([OutgoingMessage(events.BATCHES_TOPIC, str(batch_id).encode(), orjson.dumps(doc),
                                                [(events.TENANT_HEADER, b"acme")])])
        row = await settled(db_pool, batch_id, "delivered")
        (call,) = receiver.to("/batch")
        assert call.event == "batch_completed" and orjson.loads(call.body) == doc
        assert row["tenant"] == "acme" and row["job_id"] is None
        # Signed with acme's own secret (created on first need), not the default tenant's.
        assert verify(await ensure_secret(db_pool, "acme"), call.signature, call.body)
        assert not verify(await ensure_secret(db_pool, "default"), call.signature, call.body)


async def test_a_hanging_receiver_delays_neither_other_deliveries_nor_websockets(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier, webhook_timeout_s=60) as service:
        receiver.hang.add("/hang")
        stuck = await job_with_callback(db_pool, receiver.url("/hang"))
        await producer.publish_events([job_event(EventType.COMPLETED, stuck)])
        await eventually(lambda: receiver.to("/hang"), timeout_s=20)  # the request is held open now

        async with client(service) as ws:
            assert (await request(ws, {"type": "subscribe", "all": True}))["type"] == "subscribed"
            others = [await job_with_callback(db_pool, receiver.url(f"/ok/{i}")) for i in range(3)]
            sent_at = time.monotonic()
            await producer.publish_events([job_event(EventType.COMPLETED, j) for j in others])
            messages = await recv_until(ws, lambda got: len(got) == 3, timeout_s=10)
            assert {m["jobId"] for m in messages} == {str(j) for j in others}
            assert time.monotonic() - sent_at < 5
            for i in range(3):
                await eventually(lambda i=i: receiver.to(f"/ok/{i}"), timeout_s=10)  # type: ignore[misc]
            assert max(receiver.to(f"/ok/{i}")[0].at for i in range(3)) - sent_at < 8
        assert (await deliveries(db_pool, stuck))[0]["state"] == "pending"  # still in its only try
        receiver.release()


async def test_a_redelivered_event_makes_no_second_delivery(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier):
        job_id = await job_with_callback(db_pool, receiver.url("/once"))
        completed = job_event(EventType.COMPLETED, job_id)
        await producer.publish_events([completed])
        await settled(db_pool, job_id, "delivered")
        await producer.publish_events([completed, completed])  # Kafka redelivers, a replica re-reads
        await asyncio.sleep(2.0)
        assert len(await deliveries(db_pool, job_id)) == 1
        assert len(receiver.to("/once")) == 1


async def test_the_allow_list_refuses_other_hosts(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    overrides = {"webhook_allowed_hosts": "hooks.example.com, *.partner.example"}
    async with running_receiver() as receiver, webhook_notifier(start_notifier, **overrides):
        job_id = await job_with_callback(db_pool, receiver.url("/refused"))
        await producer.publish_events([job_event(EventType.COMPLETED, job_id)])
        row = await settled(db_pool, job_id, "failed")
        (attempt,) = row["attempts"]
        assert attempt["status"] is None and "WEBHOOK_ALLOWED_HOSTS" in attempt["error"]
        assert "127.0.0.1" in attempt["error"]
        await asyncio.sleep(1.0)
        assert receiver.calls == []


@pytest.mark.parametrize("kind", [EventType.STARTED, EventType.RETRY])
async def test_only_terminal_events_call_back(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool, kind: EventType
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier):
        job_id = await job_with_callback(db_pool, receiver.url("/hooks"))
        await producer.publish_events([job_event(kind, job_id)])
        marker = await job_with_callback(db_pool, receiver.url("/marker"))
        await producer.publish_events([job_event(EventType.COMPLETED, marker)])
        await settled(db_pool, marker, "delivered")
        assert await deliveries(db_pool, job_id) == [] and receiver.to("/hooks") == []


async def test_two_replicas_deliver_each_event_once(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    async with running_receiver() as receiver, webhook_notifier(start_notifier), webhook_notifier(start_notifier):
        jobs = [await job_with_callback(db_pool, receiver.url(f"/r/{i}")) for i in range(20)]
        await producer.publish_events([job_event(EventType.COMPLETED, j) for j in jobs])
        for job_id in jobs:
            await settled(db_pool, job_id, "delivered", timeout_s=30)
        await asyncio.sleep(1.0)
        assert sorted(c.path for c in receiver.calls) == sorted(f"/r/{i}" for i in range(20))
