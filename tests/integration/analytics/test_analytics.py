"""analytics against real Postgres and Tansu: the audit log, the minute counters, redelivery, junk."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from services.analytics.recorder import EventRecorder
from services.analytics.service import AnalyticsService
from shared.events import Envelope, EventType, topic_name
from shared.kafka.producer import EventProducer
from shared.settings import AnalyticsSettings
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import SettingsFactory

T0 = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
MINUTE = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def envelope(kind: EventType, job: uuid.UUID, at: datetime, *, queue: str = "emails", attempt: int = 1,
             tenant: str = "default", **data: Any) -> Envelope:
    return Envelope(type=kind, job_id=job, queue=queue, job_type="send", attempt=attempt, occurred_at=at,
                    data=data, tenant=tenant)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
def settings(service_settings: SettingsFactory, kafka_topics: dict[str, str]) -> AnalyticsSettings:
    """Analytics of this test, with the drain and request timeouts these tests always had."""
    return service_settings(AnalyticsSettings, drain_timeout_s=30.0, kafka_request_timeout_ms=5000)


@pytest.fixture
async def analytics(settings: AnalyticsSettings) -> AsyncIterator[AnalyticsService]:
    service = AnalyticsService(settings)
    await service.start()
    yield service
    await service.stop()
    assert not service.failed.is_set()


async def count_events(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM job_events"))


async def stats(pool: asyncpg.Pool) -> dict[tuple[str, datetime, str], tuple[int, int]]:
    rows = await pool.fetch("SELECT queue, minute, outcome, count, duration_ms_sum FROM queue_minute_stats")
    return {(r["queue"], r["minute"], r["outcome"]): (r["count"], r["duration_ms_sum"]) for r in rows}


async def test_events_land_in_the_audit_log_and_the_minute_counters(
    analytics: AnalyticsService, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    job, other = uuid.uuid4(), uuid.uuid4()
    s = timedelta(seconds=1)
    lifecycle = [
        envelope(EventType.SUBMITTED, job, T0, attempt=0, tenant="acme", priority=5),
        envelope(EventType.DISPATCHED, job, T0 + s, tenant="acme"),
        envelope(EventType.STARTED, job, T0 + 2 * s, tenant="acme", workerId="w1"),
        envelope(EventType.PROGRESS, job, T0 + 3 * s, tenant="acme", progress={"percent": 50}),
        envelope(EventType.COMPLETED, job, T0 + 4 * s, tenant="acme", durationMs=1500, result={}),
    ]
    elsewhere = [
        envelope(EventType.COMPLETED, other, T0 + 5 * s, queue="reports", durationMs=700),
        envelope(EventType.COMPLETED, other, T0 + 70 * s, queue="reports", attempt=2, durationMs=300),
        envelope(EventType.FAILED, other, T0 + 71 * s, queue="reports", attempt=3, reason="exhausted"),
    ]
    before = metric("conveyor_analytics_events_recorded_total", {"type": "completed"})
    # Published newest first: the log's order comes from occurredAt, not from arrival.
    await producer.publish_events(list(reversed(lifecycle)) + elsewhere)

    await poll_until(lambda: _has(db_pool, 8), timeout_s=20)
    rows = await db_pool.fetch(
        "SELECT event_id, type, tenant, queue, job_type, attempt, occurred_at, envelope FROM job_events"
        " WHERE job_id = $1 ORDER BY occurred_at", job)
    assert [r["type"] for r in rows] == ["submitted", "dispatched", "started", "progress", "completed"]
    for row, sent in zip(rows, lifecycle, strict=True):
        assert row["event_id"] == sent.event_id and row["tenant"] == "acme"
        assert (row["queue"], row["job_type"], row["attempt"], row["occurred_at"]) == (
            "emails", "send", sent.attempt, sent.occurred_at)
        assert row["envelope"] == sent.to_wire()

    next_minute = MINUTE + timedelta(minutes=1)
    assert await stats(db_pool) == {
        ("emails", MINUTE, "submitted"): (1, 0),
        ("emails", MINUTE, "dispatched"): (1, 0),
        ("emails", MINUTE, "started"): (1, 0),
        ("emails", MINUTE, "progress"): (1, 0),
        ("emails", MINUTE, "completed"): (1, 1500),
        ("reports", MINUTE, "completed"): (1, 700),
        ("reports", next_minute, "completed"): (1, 300),
        ("reports", next_minute, "failed"): (1, 0),
    }
    assert metric("conveyor_analytics_events_recorded_total", {"type": "completed"}) == before + 3

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{analytics._settings.analytics_port}") as http:
        assert (await http.get("/readyz", timeout=5)).status_code == 200
        assert "conveyor_analytics_events_recorded_total" in (await http.get("/metrics", timeout=5)).text


async def _has(pool: asyncpg.Pool, n: int) -> bool:
    return await count_events(pool) >= n


async def test_a_redelivered_event_is_stored_and_counted_once(
    analytics: AnalyticsService, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    job = uuid.uuid4()
    done = envelope(EventType.COMPLETED, job, T0, durationMs=250)
    await producer.publish_events([done])
    await poll_until(lambda: _has(db_pool, 1), timeout_s=20)
    dupes_before = metric("conveyor_analytics_duplicates_skipped_total")

    # The same event twice more (a producer retry, a redelivery), then a new one of the same
    # job: same key, same partition, so once the new one is stored the duplicates were seen.
    later = envelope(EventType.COMPLETED, job, T0 + timedelta(seconds=1), attempt=2, durationMs=50)
    await producer.publish_events([done, done])
    await producer.publish_events([later])
    await poll_until(lambda: _has(db_pool, 2), timeout_s=20)

    assert await count_events(db_pool) == 2
    assert await stats(db_pool) == {("emails", MINUTE, "completed"): (2, 300)}
    assert metric("conveyor_analytics_duplicates_skipped_total") == dupes_before + 2


async def test_junk_records_are_skipped_without_stalling(
    analytics: AnalyticsService, producer: EventProducer, db_pool: asyncpg.Pool, settings: AnalyticsSettings
) -> None:
    job = uuid.uuid4()
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000)
    await raw.start()
    try:
        topic = topic_name(settings.kafka_topic_prefix, "jobs.completed")
        key = str(job).encode()
        for junk in (b"\x00\xffnot json", b'{"type": "completed"}', b"[]", b'{"eventId": "nope"}'):
            await raw.send_and_wait(topic, junk, key=key)
    finally:
        await raw.stop()
    good = envelope(EventType.COMPLETED, job, T0, durationMs=10)
    await producer.publish_events([good])
    await poll_until(lambda: _has(db_pool, 1), timeout_s=20)
    assert await db_pool.fetchval("SELECT event_id FROM job_events") == good.event_id
    assert metric("conveyor_analytics_records_undecodable_total") >= 4


async def test_recorder_batch_dedupes_within_and_across_batches(db_pool: asyncpg.Pool) -> None:
    recorder = EventRecorder(db_pool)
    job = uuid.uuid4()
    a = envelope(EventType.COMPLETED, job, T0, durationMs=100)
    b = envelope(EventType.FAILED, job, T0, attempt=2)
    first = await recorder.record([a, a, b])
    assert (first.inserted, first.duplicates) == ({"completed": 1, "failed": 1}, 1)
    again = await recorder.record([b, a])
    assert (again.inserted, again.duplicates) == ({}, 2)
    assert await stats(db_pool) == {("emails", MINUTE, "completed"): (1, 100), ("emails", MINUTE, "failed"): (1, 0)}


async def test_an_event_postgres_refuses_is_skipped_alone(
    db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EventRecorder(db_pool)
    job = uuid.uuid4()
    poison = envelope(EventType.PROGRESS, job, T0, message="nul \u0000 inside")  # jsonb rejects \u0000
    fine = [envelope(EventType.STARTED, job, T0), envelope(EventType.COMPLETED, job, T0, durationMs=5)]
    with caplog.at_level(logging.ERROR, logger="services.analytics.recorder"):
        result = await recorder.record([fine[0], poison, fine[1]])
    assert (result.inserted_total, result.rejected) == (2, 1)
    # The skip is logged with the job's fields, for an operator filtering one job's story.
    [record] = caplog.records
    assert (record.job_id, record.event_id, record.queue) == (  # type: ignore[attr-defined]
        str(job), str(poison.event_id), "emails")
    ids = {r["event_id"] for r in await db_pool.fetch("SELECT event_id FROM job_events")}
    assert ids == {e.event_id for e in fine}


async def test_the_recorder_keeps_up_with_large_batches(db_pool: asyncpg.Pool) -> None:
    recorder = EventRecorder(db_pool)
    batch = [envelope(EventType.COMPLETED, uuid.uuid4(), T0 + timedelta(seconds=i % 120), queue=f"q{i % 5}",
                      durationMs=i) for i in range(2000)]
    started = time.perf_counter()
    result = await recorder.record(batch)
    elapsed = time.perf_counter() - started
    assert result.inserted_total == 2000
    total = await db_pool.fetchrow("SELECT sum(count) AS n, sum(duration_ms_sum) AS d FROM queue_minute_stats")
    assert (total["n"], total["d"]) == (2000, sum(range(2000)))
    # One statement per batch: thousands of events per second with room to spare.
    assert elapsed < 2.0, f"2000 events took {elapsed:.2f}s"
