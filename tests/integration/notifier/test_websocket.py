"""The /ws protocol against a real notifier fed from real Tansu topics."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from services.notifier.service import NotifierService
from shared.events import EventType, topic_name
from shared.kafka.producer import EventProducer
from tests.integration.notifier.helpers import (
    assert_quiet,
    client,
    job_event,
    recv,
    recv_until,
    request,
    send,
)


async def test_subscriptions_by_job_queue_and_all(notifier: NotifierService, producer: EventProducer) -> None:
    job_a, job_b, job_c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with client(notifier) as by_job, client(notifier) as by_queue, client(notifier) as everything:
        assert await request(by_job, {"type": "subscribe", "jobId": str(job_a)}) == {
            "type": "subscribed", "jobId": str(job_a)}
        assert await request(by_queue, {"type": "subscribe", "queue": "emails"}) == {
            "type": "subscribed", "queue": "emails"}
        assert await request(everything, {"type": "subscribe", "all": True}) == {"type": "subscribed", "all": True}

        completed = job_event(EventType.COMPLETED, job_a, attempt=2, result={"ok": True}, durationMs=12)
        sent = [
            job_event(EventType.SUBMITTED, job_a, attempt=0),
            job_event(EventType.STARTED, job_b),
            job_event(EventType.FAILED, job_c, queue="reports", reason="permanent"),
            completed,
        ]
        await producer.publish_events(sent)

        # One topic per event type: the two events of job A may arrive in either order.
        got_job = sorted(await recv_until(by_job, lambda got: len(got) == 2), key=lambda m: m["type"])
        assert [m["type"] for m in got_job] == ["job_completed", "job_update"]
        assert got_job[0] == {
            "type": "job_completed", "jobId": str(job_a), "queue": "emails", "jobType": "send",
            "status": "completed", "attempt": 2, "eventId": str(completed.event_id),
            "occurredAt": completed.occurred_at.isoformat(), "data": {"result": {"ok": True}, "durationMs": 12},
        }
        assert got_job[1]["status"] == "pending"

        got_queue = await recv_until(by_queue, lambda got: len(got) == 3)
        assert {m["jobId"] for m in got_queue} == {str(job_a), str(job_b)}

        got_all = await recv_until(everything, lambda got: len(got) == 4)
        assert {m["eventId"] for m in got_all} == {str(e.event_id) for e in sent}
        assert {m["type"] for m in got_all} == {"job_update", "job_failed", "job_completed"}

        # Alerts go to `all` subscribers only.
        await _publish_raw(notifier, "alerts", b'{"rule": "failure_rate", "queue": "emails", "value": 0.9}')
        alert = await recv(everything)
        # An alert without its own eventId gets one derived from its record (the same on every replica).
        assert alert == {"type": "alert", "eventId": str(uuid.UUID(alert["eventId"])),
                         "alert": {"rule": "failure_rate", "queue": "emails", "value": 0.9}}
        for ws in (by_job, by_queue, everything):
            await assert_quiet(ws, 0.5)


async def test_unsubscribe_stops_delivery(notifier: NotifierService, producer: EventProducer) -> None:
    job = uuid.uuid4()
    async with client(notifier) as ws, client(notifier) as witness:
        await request(ws, {"type": "subscribe", "queue": "emails"})
        await request(witness, {"type": "subscribe", "jobId": str(job)})
        await producer.publish_events([job_event(EventType.STARTED, job)])
        assert (await recv(ws))["status"] == "running"
        assert (await recv(witness))["status"] == "running"

        assert await request(ws, {"type": "unsubscribe", "queue": "emails"}) == {
            "type": "unsubscribed", "queue": "emails"}
        await producer.publish_events([job_event(EventType.COMPLETED, job)])
        assert (await recv(witness))["type"] == "job_completed"  # it was delivered...
        await assert_quiet(ws)  # ...but not to the client that left


async def test_ping_and_junk_never_break_the_connection(notifier: NotifierService, producer: EventProducer) -> None:
    async with client(notifier) as ws, client(notifier) as witness:
        assert await request(ws, {"type": "ping"}) == {"type": "pong"}
        await request(witness, {"type": "subscribe", "queue": "emails"})
        for junk in ("not json", "[1, 2]", '{"type": "explode"}', '{"type": "subscribe"}',
                     '{"type": "subscribe", "jobId": "nope"}', '{"type": "subscribe", "queue": "NO SPACES"}',
                     '{"type": "subscribe", "batchId": 7}', '{"type": "subscribe", "all": "yes"}',
                     '{"type": "subscribe", "all": true, "since": "not-an-id"}', '{"no": "type"}'):
            await ws.send(junk)
            reply = await recv(ws)
            assert reply["type"] == "error" and reply["message"], junk
            # ... and the others are undisturbed: a witness on the same replica still gets every event.
            seen = job_event(EventType.STARTED, uuid.uuid4())
            await producer.publish_events([seen])
            assert (await recv(witness))["eventId"] == str(seen.event_id)
        await ws.send(b"\xff\xfe binary junk")
        assert (await recv(ws))["type"] == "error"

        assert await request(ws, {"type": "ping"}) == {"type": "pong"}
        job = uuid.uuid4()
        await request(ws, {"type": "subscribe", "jobId": str(job)})
        await producer.publish_events([job_event(EventType.PROGRESS, job, progress={"percent": 40})])
        message = await recv(ws)
        assert (message["type"], message["status"], message["data"]["progress"]) == (
            "job_progress", "running", {"percent": 40})


async def test_junk_on_the_topics_is_skipped(notifier: NotifierService, producer: EventProducer) -> None:
    job = uuid.uuid4()
    async with client(notifier) as ws:
        await send(ws, {"type": "subscribe", "all": True})
        await recv(ws)
        await _publish_raw(notifier, "jobs.completed", b"\x00 not an envelope", key=str(job).encode())
        await _publish_raw(notifier, "alerts", b"{broken json")
        await producer.publish_events([job_event(EventType.CANCELLED, job, reason="cancelled_by_user")])
        message = await recv(ws)
        assert (message["type"], message["status"], message["jobId"]) == ("job_update", "cancelled", str(job))


async def _publish_raw(service: NotifierService, topic: str, value: bytes, key: bytes | None = None) -> None:
    settings = service._settings
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000)
    await raw.start()
    try:
        await raw.send_and_wait(topic_name(settings.kafka_topic_prefix, topic), value, key=key)
    finally:
        await raw.stop()
