"""The aggregates the recorder writes with each batch: exact figures, redelivery, concurrent replicas, speed."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg

from services.analytics.recorder import EventRecorder
from shared.analytics.histogram import bucket_of
from shared.events import Envelope, EventType
from tests.integration.analytics.oracle import assert_aggregates_match_the_audit_log, stored

T0 = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
MINUTE = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)
E = EventType


def event(kind: EventType, job: uuid.UUID, at: datetime, attempt: int = 1, **data: Any) -> Envelope:
    return Envelope(type=kind, job_id=job, queue="emails", job_type="send", attempt=attempt, occurred_at=at,
                    data=data, tenant="acme")


def hist(*values_ms: int) -> tuple[int, ...]:
    """The trimmed histogram of these values."""
    counts = [0] * (max(bucket_of(v) for v in values_ms) + 1)
    for v in values_ms:
        counts[bucket_of(v)] += 1
    return tuple(counts)


def outcome_times(start: datetime, ms: int) -> dict[str, Any]:
    return {"startedAt": start.isoformat(), "endedAt": (start + timedelta(milliseconds=ms)).isoformat()}


async def test_each_new_event_lands_in_its_minute_hour_and_day(db_pool: asyncpg.Pool) -> None:
    job, lost = uuid.uuid4(), uuid.uuid4()
    events = [
        event(E.SUBMITTED, job, T0, attempt=0),
        event(E.STARTED, job, T0 + S, workerId="w1", waitMs=40),
        event(E.PROGRESS, job, T0 + S, workerId="w1"),
        # A retry without durationMs: its duration is endedAt - startedAt.
        event(E.RETRY, job, T0 + 2 * S, workerId="w1", error={"type": "Timeout", "message": "slow"},
              **outcome_times(T0 + S, 500)),
        event(E.STARTED, job, T0 + 60 * S, attempt=2, workerId="w2", waitMs=1000),
        event(E.COMPLETED, job, T0 + 61 * S, attempt=2, workerId="w2", durationMs=1500),
        # An hour later a lost lease ends another job for good: no worker, no start, no duration.
        event(E.FAILED, lost, T0 + 3600 * S, attempt=3, workerId=None, error={"type": "LeaseExpired"},
              startedAt=None, endedAt=(T0 + 3600 * S).isoformat()),
        # A started event of an older worker (no waitMs) counts as a start, not in the wait figures.
        event(E.STARTED, lost, T0 + 3600 * S, attempt=3, workerId="w3"),
        event(E.CANCELLED, uuid.uuid4(), T0 + 86400 * S, attempt=0),
    ]
    result = await EventRecorder(db_pool).record(events)
    assert result.inserted_total == len(events)

    zero = {"submitted": 0, "started": 0, "completed": 0, "failed": 0, "retried": 0, "cancelled": 0,
            "duration_ms_sum": 0, "duration_count": 0, "wait_ms_sum": 0, "wait_count": 0,
            "duration_hist": (), "wait_hist": (), "completed_by_attempt": (), "retried_by_attempt": (),
            "failed_by_attempt": (), "errors": {}}
    first_minute = {**zero, "submitted": 1, "started": 1, "retried": 1, "duration_ms_sum": 500,
                    "duration_count": 1, "duration_hist": hist(500), "wait_ms_sum": 40, "wait_count": 1,
                    "wait_hist": hist(40), "retried_by_attempt": (1,), "errors": {"Timeout": 1}}
    second_minute = {**zero, "started": 1, "completed": 1, "duration_ms_sum": 1500, "duration_count": 1,
                     "duration_hist": hist(1500), "wait_ms_sum": 1000, "wait_count": 1, "wait_hist": hist(1000),
                     "completed_by_attempt": (0, 1)}
    lost_minute = {**zero, "started": 1, "failed": 1, "failed_by_attempt": (0, 0, 1), "errors": {"LeaseExpired": 1}}
    next_day = {**zero, "cancelled": 1}
    key = ("acme", "emails", "send")
    hour, day = MINUTE, MINUTE.replace(hour=0)
    assert await stored(db_pool, "stats_minute") == {
        (*key, MINUTE): first_minute,
        (*key, MINUTE + timedelta(minutes=1)): second_minute,
        (*key, MINUTE + timedelta(hours=1)): lost_minute,
        (*key, MINUTE + timedelta(days=1)): next_day,
    }
    both = {**first_minute, "started": 2, "completed": 1, "duration_ms_sum": 2000, "duration_count": 2,
            "duration_hist": hist(500, 1500),
            "wait_ms_sum": 1040, "wait_count": 2, "completed_by_attempt": (0, 1),
            "wait_hist": hist(40, 1000)}
    assert await stored(db_pool, "stats_hour") == {
        (*key, hour): both, (*key, hour + timedelta(hours=1)): lost_minute, (*key, hour + timedelta(days=1)): next_day,
    }
    whole_day = {**both, "started": 3, "failed": 1, "failed_by_attempt": (0, 0, 1),
                 "errors": {"Timeout": 1, "LeaseExpired": 1}}
    assert await stored(db_pool, "stats_day") == {(*key, day): whole_day, (*key, day + timedelta(days=1)): next_day}
    workers = await db_pool.fetch(
        "SELECT worker_id, bucket, completed, failed, retried, busy_ms FROM worker_stats_minute ORDER BY worker_id")
    assert [tuple(r) for r in workers] == [
        ("w1", MINUTE, 0, 0, 1, 500), ("w2", MINUTE + timedelta(minutes=1), 1, 0, 0, 1500)]
    await assert_aggregates_match_the_audit_log(db_pool)


async def test_an_event_stamped_in_another_time_zone_counts_in_its_utc_minute_hour_and_day(
    db_pool: asyncpg.Pool,
) -> None:
    # 23:45 at +05:30 on May 2nd is 18:15 UTC: another hour, and another day than its local one.
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2024, 5, 2, 23, 45, 30, tzinfo=india)
    job = uuid.uuid4()
    await EventRecorder(db_pool).record([
        event(E.COMPLETED, job, local, workerId="w1", durationMs=20),
        event(E.SUBMITTED, job, local.astimezone(UTC) + timedelta(minutes=1), attempt=0),
    ])
    utc = datetime(2024, 5, 2, 18, 15, tzinfo=UTC)
    assert set(await stored(db_pool, "stats_minute")) == {
        ("acme", "emails", "send", utc), ("acme", "emails", "send", utc + timedelta(minutes=1))}
    assert set(await stored(db_pool, "stats_hour")) == {("acme", "emails", "send", utc.replace(minute=0))}
    assert set(await stored(db_pool, "stats_day")) == {("acme", "emails", "send", utc.replace(hour=0, minute=0))}
    assert [tuple(r) for r in await db_pool.fetch("SELECT worker_id, bucket FROM worker_stats_minute")] == [
        ("w1", utc)]
    assert sorted(tuple(r) for r in await db_pool.fetch(
        "SELECT minute, outcome, count, duration_ms_sum FROM queue_minute_stats")) == [
        (utc, "completed", 1, 20), (utc + timedelta(minutes=1), "submitted", 1, 0)]
    await assert_aggregates_match_the_audit_log(db_pool)


def mixed_events(n: int, *, spread_s: int = 180, queues: int = 5) -> list[Envelope]:
    """`n` events of every kind, a few queues, over a few minutes (as a busy cluster emits them)."""
    rng = random.Random(n)
    errors = ("Timeout", "RetryableError", "PermanentError")
    out = []
    for i in range(n):
        kind = rng.choice(list(EventType))
        at = T0 + timedelta(milliseconds=rng.randrange(spread_s * 1000))
        data: dict[str, Any] = {"workerId": f"w{i % 7}"}
        if kind is E.STARTED:
            data["waitMs"] = rng.randrange(20_000)
        elif kind is E.COMPLETED:
            data["durationMs"] = int(rng.lognormvariate(5, 2))
        elif kind in (E.RETRY, E.FAILED):
            data |= {"error": {"type": rng.choice(errors)}, **outcome_times(at, rng.randrange(60_000))}
        out.append(Envelope(type=kind, job_id=uuid.uuid4(), queue=f"q{i % queues}", job_type=f"t{i % 3}",
                            attempt=rng.randint(0, 25), occurred_at=at, data=data))
    return out


async def snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    tables = {t: await stored(pool, t) for t in ("stats_minute", "stats_hour", "stats_day")}
    workers = await pool.fetch("SELECT * FROM worker_stats_minute")
    minutes = await pool.fetch("SELECT * FROM queue_minute_stats")
    return {**tables, "workers": {tuple(r) for r in workers}, "queue_minutes": {tuple(r) for r in minutes}}


async def test_a_redelivered_batch_adds_nothing_and_a_mixed_one_only_its_new_events(db_pool: asyncpg.Pool) -> None:
    recorder = EventRecorder(db_pool)
    events = mixed_events(600)
    first, second = events[:400], events[400:]
    await recorder.record(first)
    once = await snapshot(db_pool)
    again = await recorder.record(list(reversed(first)))
    assert (again.inserted_total, again.duplicates) == (0, 400)
    assert await snapshot(db_pool) == once
    # Half old, half new, shuffled: only the new half counts.
    mixed = first[200:] + second
    random.Random(1).shuffle(mixed)
    result = await recorder.record(mixed)
    assert (result.inserted_total, result.duplicates) == (200, 200)
    await assert_aggregates_match_the_audit_log(db_pool)


async def test_concurrent_replicas_with_overlapping_batches_neither_deadlock_nor_double_count(
    db_pool: asyncpg.Pool,
) -> None:
    # Two replicas during a rebalance record the same events in different orders and groupings.
    events = mixed_events(1500, spread_s=120, queues=3)
    a, b = EventRecorder(db_pool), EventRecorder(db_pool)
    chunks = [events[i:i + 300] for i in range(0, len(events), 300)]
    results = await asyncio.gather(
        *(a.record(chunk) for chunk in chunks),
        *(b.record(list(reversed(chunk + chunks[(i + 1) % len(chunks)]))) for i, chunk in enumerate(chunks)),
    )
    assert sum(r.inserted_total for r in results) == len(events)
    assert await db_pool.fetchval("SELECT count(*) FROM job_events") == len(events)
    await assert_aggregates_match_the_audit_log(db_pool)


async def backend_cpu_s(pool: asyncpg.Pool) -> float:
    """CPU seconds used so far by this test database's Postgres backends (read from /proc; 0 elsewhere)."""
    pids = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return sum(_cpu_ticks(row["pid"]) for row in pids) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0  # not on this machine, or gone
    return int(fields[11]) + int(fields[12])  # utime, stime


async def test_recording_keeps_up_with_a_busy_worker(db_pool: asyncpg.Pool) -> None:
    recorder = EventRecorder(db_pool)
    template = mixed_events(2000, spread_s=5 * 60, queues=10)
    batches = [[e.model_copy(update={"event_id": uuid.uuid4()}) for e in template] for _ in range(3)]
    await recorder.record(mixed_events(50))  # connections open, statements prepared: not measured
    cpu_before = await backend_cpu_s(db_pool)
    began = time.perf_counter()
    for batch in batches:
        await recorder.record(batch)
    elapsed = time.perf_counter() - began
    cpu_per_event_us = (await backend_cpu_s(db_pool) - cpu_before) / (3 * 2000) * 1e6
    rate = 3 * 2000 / elapsed
    print(f"recorded {3 * 2000} mixed events in {elapsed:.2f}s: {rate:.0f} events/s,"
          f" Postgres backend CPU {cpu_per_event_us:.0f} µs/event")
    # One transaction per batch of 2,000: thousands of events per second with room to spare.
    assert rate > 2000, f"{rate:.0f} events/s"
