"""The `dead_letter` alert: one on `alerts` per job entering the DLQ, never one for a redelivery or a cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from shared.events import EventType, utcnow
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

PERMANENT = {"type": "PermanentError", "message": "bad input", "retryable": False}


Record = tuple[bytes, Any, dict[str, str]]


async def _alerts(bootstrap: str, topic: str, settle_s: float, want: int = 1) -> list[Record]:
    """Every record on the alerts topic (key, JSON, headers), read from the start until `want` arrived
    and then nothing more for `settle_s`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Record] = []
    try:
        deadline = time.monotonic() + 20
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    found.append((r.key, orjson.loads(r.value), {k: v.decode() for k, v in r.headers}))
                    quiet_since = time.monotonic()
            if len(found) >= want and time.monotonic() - quiet_since > settle_s:
                break
    finally:
        await consumer.stop()
    return found


async def _started(harness: Harness, max_attempts: int = 3) -> uuid.UUID:
    job = await harness.insert(max_attempts=max_attempts)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "running")
    return job


async def test_a_permanent_failure_raises_one_dead_letter_alert(
    harness: Harness, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    await harness.start()
    job = await _started(harness)
    now = utcnow().isoformat()
    failed = worker_event(
        EventType.FAILED, job, 1, workerId="w1", error=PERMANENT, reason="permanent", startedAt=now, endedAt=now,
    )
    await harness.publish(failed)
    await harness.wait_status(job, "failed")
    # Redelivered (same event) and repeated (a new event id): the row is over, nothing more is raised.
    await harness.publish(failed)
    await harness.publish(failed.model_copy(update={"event_id": uuid.uuid4()}))
    await harness.tap.wait(job, EventType.FAILED, count=3)
    await asyncio.sleep(1.0)  # the scheduler's projection interval, with margin

    [(key, alert, headers)] = await _alerts(kafka_bootstrap, kafka_topics["alerts"], settle_s=1.5)
    assert key == b"q" and headers["tenant"] == "acme"
    assert alert["kind"] == "dead_letter" and alert["status"] == "open" and alert["severity"] == "warning"
    assert (alert["queue"], alert["jobType"], alert["resolvedAt"]) == ("q", "noop", None)
    assert alert["details"]["jobId"] == str(job) and alert["details"]["attempts"] == 1
    assert alert["details"]["error"] == PERMANENT
    assert uuid.UUID(alert["alertId"]) and alert["openedAt"] == now


async def test_an_exhausted_lost_lease_raises_the_alert_and_a_cancel_does_not(
    harness: Harness, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    await harness.start()
    # The last attempt's worker vanished: the scheduler fails the job itself.
    job = await harness.insert(max_attempts=1)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    await harness.dispatcher.pop(["q"], 1, 300, "doomed-worker")
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="doomed", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "failed")
    # A running job cancelled by its worker ends in `cancelled`: not a dead letter.
    other = await _started(harness)
    await harness.publish(worker_event(EventType.CANCELLED, other, 1, reason="cancelled_by_user", by="worker"))
    await harness.wait_status(other, "cancelled")
    await asyncio.sleep(1.0)

    [(_, alert, _)] = await _alerts(kafka_bootstrap, kafka_topics["alerts"], settle_s=1.5)
    assert alert["details"]["jobId"] == str(job)
    assert alert["details"]["error"]["type"] == "lease_expired"
