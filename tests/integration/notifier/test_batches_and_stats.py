"""Batch subscriptions with `batch_completed`, `queue_stats`, and two replicas each serving every update."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from services.notifier.service import NotifierService
from shared import events
from shared.events import EventType
from shared.kafka.producer import EventProducer, OutgoingMessage
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import (
    assert_quiet,
    client,
    http_url,
    job_event,
    mixed_events,
    recv,
    recv_until,
    request,
    sse_events,
)

_JOB = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, batch_id)
VALUES ($1, $2, 'emails', 'send', 'pending', 5, '{}', 3, '{}', $3)
"""


async def _batch(pool: asyncpg.Pool, tenant: str, jobs: list[uuid.UUID]) -> uuid.UUID:
    batch = uuid.uuid4()
    await pool.execute("INSERT INTO job_batches (id, tenant, total) VALUES ($1, $2, $3)", batch, tenant, len(jobs))
    for job in jobs:
        await pool.execute(_JOB, job, tenant, batch)
    return batch


def _completed(batch: uuid.UUID, tenant: str) -> tuple[dict[str, Any], OutgoingMessage]:
    doc = {"eventId": str(uuid.uuid4()), "type": "batch_completed", "schemaVersion": 1,
           "occurredAt": events.utcnow().isoformat(), "jobId": None, "queue": None, "jobType": None,
           "attempt": None, "data": {"batchId": str(batch), "counts": {"total": 2, "completed": 2}}}
    headers = [(events.TENANT_HEADER, tenant.encode())]
    return doc, OutgoingMessage(events.BATCHES_TOPIC, str(batch).encode(), orjson.dumps(doc), headers)


async def test_a_batch_subscriber_hears_its_jobs_and_batch_completed(
    notifier: NotifierService, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    inside, outside = [uuid.uuid4(), uuid.uuid4()], uuid.uuid4()
    batch = await _batch(db_pool, "default", inside)
    foreign = await _batch(db_pool, "other", [uuid.uuid4()])
    async with client(notifier) as ws, client(notifier) as everything, client(notifier) as by_queue:
        assert await request(ws, {"type": "subscribe", "batchId": str(batch)}) == {
            "type": "subscribed", "batchId": str(batch)}
        await request(everything, {"type": "subscribe", "all": True})
        await request(by_queue, {"type": "subscribe", "queue": "emails"})
        # Another tenant's batch id answers like an unknown one: subscribed, and nothing ever comes.
        await request(ws, {"type": "subscribe", "batchId": str(foreign)})
        job_events = [job_event(EventType.COMPLETED, j) for j in (*inside, outside)]
        await producer.publish_events(job_events)
        got = await recv_until(ws, lambda got: len(got) == 2)
        assert {m["jobId"] for m in got} == {str(j) for j in inside}
        doc, message = _completed(batch, "default")
        _, theirs = _completed(foreign, "other")
        await producer.publish([message, theirs])
        assert await recv(ws) == {"type": "batch_completed", "batchId": str(batch), "eventId": doc["eventId"],
                                  "occurredAt": doc["occurredAt"], "data": doc["data"]}
        seen = await recv_until(everything, lambda got: len(got) == 4)
        assert seen[-1]["type"] == "batch_completed"
        assert await request(ws, {"type": "unsubscribe", "batchId": str(batch)}) == {
            "type": "unsubscribed", "batchId": str(batch)}
        await producer.publish_events([job_event(EventType.FAILED, inside[0])])
        assert (await recv(everything))["type"] == "job_failed"
        await assert_quiet(ws, 0.5)
        assert len(await recv_until(by_queue, lambda got: len(got) == 4)) == 4  # no batch_completed
        await assert_quiet(by_queue, 0.3)


async def test_queue_stats_once_a_second_to_queue_and_all_subscribers(
    start_notifier: NotifierFactory, producer: EventProducer
) -> None:
    async with start_notifier(auth_required=False, queue_stats_enabled=True) as notifier, \
            client(notifier) as by_queue, client(notifier) as everything, client(notifier) as other:
        await request(by_queue, {"type": "subscribe", "queue": "stats-q"})
        await request(everything, {"type": "subscribe", "all": True})
        await request(other, {"type": "subscribe", "queue": "elsewhere"})
        sent = mixed_events("stats-q", 35)
        sent.append(job_event(EventType.COMPLETED, uuid.uuid4(), queue="stats-q", durationMs=120))
        sent.append(job_event(EventType.STARTED, uuid.uuid4(), queue="stats-q", tenant="other"))
        await producer.publish_events(sent)
        counted: dict[str, int] = {}
        stats: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(20):
            while sum(counted.values()) < 36:
                message = await recv(by_queue)
                if message["type"] == "queue_stats":
                    stats.append(message | {"_at": loop.time()})
                    for kind, n in message["counts"].items():
                        counted[kind] = counted.get(kind, 0) + n
        ours = [e for e in sent if e.tenant == "default"]
        assert counted == {k.value: sum(1 for e in ours if e.type is k) for k in EventType}  # the other tenant's not
        last = stats[-1]
        assert last["queue"] == "stats-q" and 1.0 <= last["intervalS"] < 3
        assert set(last) >= {"eventId", "at", "counts", "perSecond", "durationMs"}
        assert any(s["durationMs"] and s["durationMs"]["max"] == 120 for s in stats)
        # At most one a second per queue; the queue then goes quiet: one message of zeros, then none.
        gaps = [b["_at"] - a["_at"] for a, b in itertools.pairwise(stats)]
        assert all(gap > 0.8 for gap in gaps), gaps
        zero = await recv(by_queue, 5)
        assert zero["type"] == "queue_stats" and sum(zero["counts"].values()) == 0
        await assert_quiet(by_queue, 1.5)
        to_all = await recv_until(everything, lambda got: sum(m["type"] == "queue_stats" for m in got) == 2)
        assert len(to_all) == 36 + 2
        await assert_quiet(other, 0.2)


async def test_two_replicas_each_deliver_every_update(
    start_notifier: NotifierFactory, producer: EventProducer
) -> None:
    async with start_notifier(auth_required=False) as one, start_notifier(auth_required=False) as two:
        events_ = mixed_events("both", 120)
        job = events_[0].job_id
        want_job = {str(e.event_id) for e in events_ if e.job_id == job}
        async with client(one) as a_all, client(two) as b_all, client(two) as b_job, \
                httpx.AsyncClient(base_url=http_url(one), timeout=httpx.Timeout(10, read=20)) as http, \
                http.stream("GET", "/sse", params={"queue": "both"}) as response:
            reading = sse_events(response)
            assert (await anext(reading))[1] == "subscribed"
            await request(a_all, {"type": "subscribe", "all": True})
            await request(b_all, {"type": "subscribe", "all": True})
            await request(b_job, {"type": "subscribe", "jobId": str(job)})
            await producer.publish_events(events_)
            want = {str(e.event_id) for e in events_}
            for ws in (a_all, b_all):
                got = [m["eventId"] for m in await recv_until(ws, lambda got: len(got) == len(want))]
                assert len(got) == len(set(got)) and set(got) == want
            assert {m["eventId"] for m in await recv_until(b_job, lambda g: len(g) == len(want_job))} == want_job
            over_sse = [(await asyncio.wait_for(anext(reading), 15))[2]["eventId"] for _ in want]
            assert set(over_sse) == want
            for ws in (a_all, b_all, b_job):
                await assert_quiet(ws, 0.3)
