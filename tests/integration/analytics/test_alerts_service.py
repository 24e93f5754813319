"""Alerts in a running analytics service (default alert settings): a failure spike on a new queue, sent as
worker events, is stored and published on `alerts` within 60 s; the scheduler's dead_letter alerts are stored too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from services.analytics.service import AnalyticsService
from services.scheduler.dead_letters import alert_message
from shared import events
from shared.events import Envelope, EventType
from shared.kafka.consumer import ConsumerLoop
from shared.kafka.producer import EventProducer
from shared.settings import AnalyticsSettings
from tests.fixtures.polling import eventually, poll_until
from tests.fixtures.resources import SettingsFactory
from tests.integration.scheduler.support import insert_job


def _outcome(kind: EventType, queue: str) -> Envelope:
    """A worker's terminal event of a one-attempt `send` job of tenant acme."""
    now = datetime.now(UTC)
    data: dict[str, Any] = {"workerId": "w1", "startedAt": now.isoformat(), "endedAt": now.isoformat(), "durationMs": 5}
    if kind is EventType.FAILED:
        data |= {"error": {"type": "PermanentError", "message": "no"}, "reason": "permanent"}
    return Envelope(type=kind, job_id=uuid.uuid4(), queue=queue, job_type="send", attempt=1, occurred_at=now,
                    data=data, tenant="acme")


class AlertTap:
    """Every message on this test's `alerts` topic, from the first one."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.alerts: list[dict[str, Any]] = []
        self._loop = ConsumerLoop(settings, topics=(events.ALERTS_TOPIC,), group_id=None, handler=self._on,
                                  client_id="test-alert-tap")

    async def _on(self, records: list[ConsumerRecord]) -> None:
        self.alerts.extend(orjson.loads(r.value) for r in records)

    async def __aenter__(self) -> AlertTap:
        self._task = asyncio.create_task(self._loop.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._loop.stop()
        await asyncio.wait_for(self._task, 15)


@pytest.fixture
async def analytics(service_settings: SettingsFactory, kafka_topics: dict[str, str]) -> AsyncIterator[AnalyticsService]:
    service = AnalyticsService(service_settings(AnalyticsSettings))  # the alert settings are the defaults
    await service.start()
    yield service
    await service.stop()
    assert not service.failed.is_set()


async def test_failure_spike_is_alerted_within_a_minute_and_dead_letters_are_stored(
    analytics: AnalyticsService, producer: EventProducer, db_pool: asyncpg.Pool,
) -> None:
    async with AlertTap(analytics._settings) as tap:
        # The scheduler's dead_letter alert, as it publishes it, for a job in the DLQ.
        in_dlq = await insert_job(db_pool, status="failed", queue="mail", job_type="send", tenant="acme", attempts=3)
        failed = Envelope(type=EventType.FAILED, job_id=in_dlq, queue="mail", job_type="send", attempt=3,
                          occurred_at=datetime.now(UTC), data={"error": {"type": "Boom"}, "reason": "exhausted"},
                          tenant="acme")
        await producer.publish([alert_message(failed)])

        # A new queue: 20 successes, then 40 permanent failures within the minute, as workers report
        # them: events → audit log and stats_minute (the recorder) → the detector.
        await producer.publish_events([_outcome(EventType.COMPLETED, "fresh") for _ in range(20)])
        await asyncio.sleep(0.5)
        await producer.publish_events([_outcome(EventType.FAILED, "fresh") for _ in range(40)])
        spiked = time.monotonic()
        row = await poll_until(
            lambda: db_pool.fetchrow("SELECT * FROM alerts WHERE kind = 'failure_rate' AND queue = 'fresh'"),
            timeout_s=60, every_s=0.2)
        assert time.monotonic() - spiked < 60
        assert (row["status"], row["job_type"], row["tenant"]) == ("open", "send", None)
        published = await eventually(lambda: [a for a in tap.alerts if a.get("kind") == "failure_rate"], timeout_s=20)
        assert published[0]["alertId"] == str(row["alert_id"]) and published[0]["status"] == "open"
        assert await poll_until(lambda: db_pool.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0,
                                timeout_s=10) == 0  # the relay deleted what Kafka acknowledged

        dead = await poll_until(lambda: db_pool.fetchrow("SELECT * FROM alerts WHERE kind = 'dead_letter'"),
                                timeout_s=20, every_s=0.2)
        assert (dead["tenant"], dead["queue"], dead["status"]) == ("acme", "mail", "open")
        assert dead["details"]["jobId"] == str(failed.job_id)
        # Read back again (its own alert, a redelivery): still one row each.
        await producer.publish([alert_message(failed)])
        await asyncio.sleep(1.5)
        assert await db_pool.fetchval("SELECT count(*) FROM alerts") == 2
        assert (await db_pool.fetchrow("SELECT status FROM alerts WHERE kind = 'dead_letter'"))["status"] == "open"

        # Retried out of the DLQ: its alert resolves, and says so on `alerts`.
        await db_pool.execute("UPDATE jobs SET status = 'queued' WHERE id = $1", in_dlq)
        done = await poll_until(
            lambda: db_pool.fetchrow("SELECT * FROM alerts WHERE kind = 'dead_letter' AND status = 'resolved'"),
            timeout_s=30, every_s=0.2)
        assert done["alert_id"] == dead["alert_id"] and done["resolved_at"] is not None
        resolved = await eventually(
            lambda: [a for a in tap.alerts if a.get("kind") == "dead_letter" and a.get("status") == "resolved"],
            timeout_s=20)
        assert resolved[0]["alertId"] == str(dead["alert_id"])
