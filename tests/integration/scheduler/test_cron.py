"""Cron firing on real servers: a due schedule fires once, even with two schedulers; misfire policies."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.scheduler.cron import lease_key
from shared.cron import next_fire, previous_fire, zone
from tests.fixtures.polling import poll_until
from tests.integration.scheduler.conftest import Harness

TEMPLATE = {
    "queue": "q", "jobType": "noop", "payload": {"n": 1}, "priority": 7, "maxAttempts": 2,
    "retry": {"strategy": "fixed", "baseDelayMs": 10, "maxDelayMs": 10, "factor": 2.0, "jitter": False},
    "timeoutMs": 5000, "tags": ["cron"], "callbackUrl": None,
}

INSERT_SCHEDULE = """
INSERT INTO schedules (id, tenant, name, cron, timezone, enabled, misfire_policy, job, next_fire_at)
VALUES ($1, 'acme', 'test', $2, 'UTC', $3, $4, $5::text::jsonb, COALESCE($6, now() - interval '1 second'))
RETURNING next_fire_at
"""


async def insert_schedule(
    pool: asyncpg.Pool, *, cron: str | None = None, policy: str = "skip", due: datetime | None = None,
    enabled: bool = True,
) -> tuple[uuid.UUID, datetime]:
    """A schedule whose next fire time is `due` (default: just passed, by Postgres's clock); its id and that time.

    The default cron is hourly, half an hour away: after `due` its next fire is far off, so a test that
    expects exactly one fire never meets the next one (an every-minute cron did, when a loaded machine
    carried the test across a minute boundary).
    """
    if cron is None:
        now = await pool.fetchval("SELECT now()")
        cron = f"{(now.minute + 30) % 60} * * * *"
    schedule_id = uuid.uuid4()
    stored = await pool.fetchval(INSERT_SCHEDULE, schedule_id, cron, enabled, policy, orjson.dumps(TEMPLATE).decode(),
                                 due)
    return schedule_id, stored


async def missed_since(pool: asyncpg.Pool, hours: int) -> tuple[str, datetime, datetime]:
    """An hourly cron whose latest time is half an hour ago (long past the misfire grace), and the time
    `hours` hours before that: (cron, first missed time, latest missed time)."""
    now = await pool.fetchval("SELECT now()")
    cron = f"{(now.minute + 30) % 60} * * * *"
    latest = previous_fire(cron, zone("UTC"), now)
    assert latest is not None
    return cron, latest - timedelta(hours=hours), latest


async def fired_jobs(pool: asyncpg.Pool, schedule_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT * FROM jobs WHERE idempotency_key LIKE $1 ORDER BY created_at", f"cron:{schedule_id}:%"
    ))


async def schedule_row(pool: asyncpg.Pool, schedule_id: uuid.UUID) -> Any:
    return await pool.fetchrow("SELECT *, now() AS db_now FROM schedules WHERE id = $1", schedule_id)


async def moved_on(pool: asyncpg.Pool, schedule_id: uuid.UUID) -> Any:
    """The schedule once its next fire time is in the future again (the fire transaction committed)."""
    return await poll_until(lambda: schedule_row(pool, schedule_id), lambda r: r["next_fire_at"] > r["db_now"])


async def test_a_due_schedule_fires_one_job_that_runs_the_pipeline(harness: Harness) -> None:
    await harness.start()
    schedule_id, due = await insert_schedule(harness.pool)
    row = await moved_on(harness.pool, schedule_id)
    jobs = await fired_jobs(harness.pool, schedule_id)
    assert len(jobs) == 1
    job = jobs[0]
    assert job["idempotency_key"] == f"cron:{schedule_id}:{due.isoformat()}"
    assert (job["tenant"], job["queue"], job["job_type"], job["priority"], job["payload"]) == (
        "acme", "q", "noop", 7, {"n": 1})
    assert (job["max_attempts"], job["timeout_ms"], job["tags"]) == (2, 5000, ["cron"])
    assert row["last_fired_at"] == due and row["skipped_fires"] == 0
    # Its `submitted` event went out like a POST /jobs one: the scheduler dispatched the job.
    await harness.wait_status(job["id"], "queued")


async def test_two_schedulers_fire_each_time_exactly_once(harness: Harness) -> None:
    first = await harness.start()
    await harness.start()
    schedules = [await insert_schedule(harness.pool) for _ in range(5)]
    for schedule_id, _ in schedules:
        await moved_on(harness.pool, schedule_id)
    # Both replicas poll every 250 ms: this sleep lets several polls pass after the fires, because the
    # behaviour under test is that nothing more happens.
    await asyncio.sleep(1.0)
    for schedule_id, due in schedules:
        jobs = await fired_jobs(harness.pool, schedule_id)
        assert [j["idempotency_key"] for j in jobs] == [f"cron:{schedule_id}:{due.isoformat()}"]
    # Failover: the leader stops (giving its lease up); the other replica fires the next due schedule.
    holder = await harness.redis.get(lease_key(first.settings.redis_key_prefix))
    assert holder is not None
    await first.stop()
    schedule_id, due = await insert_schedule(harness.pool)
    await moved_on(harness.pool, schedule_id)
    assert [j["idempotency_key"] for j in await fired_jobs(harness.pool, schedule_id)] == [
        f"cron:{schedule_id}:{due.isoformat()}"
    ]


async def test_a_fire_already_made_is_not_doubled(harness: Harness) -> None:
    # A stale leader's fire committed, its schedule row not moved on (e.g. restored): the key stops a second job.
    schedule_id, due = await insert_schedule(harness.pool)
    key = f"cron:{schedule_id}:{due.isoformat()}"
    await harness.pool.execute(
        "INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry,"
        " idempotency_key) VALUES ($1, 'acme', 'q', 'noop', 'completed', 5, '{}', 1, '{}', $2)",
        uuid.uuid4(), key,
    )
    await harness.start()
    await moved_on(harness.pool, schedule_id)
    assert len(await fired_jobs(harness.pool, schedule_id)) == 1


async def test_misfire_skip_fires_nothing_missed_and_records_it(harness: Harness) -> None:
    await harness.start()
    cron, first, latest = await missed_since(harness.pool, hours=3)
    schedule_id, _ = await insert_schedule(harness.pool, cron=cron, due=first)
    row = await moved_on(harness.pool, schedule_id)
    assert await fired_jobs(harness.pool, schedule_id) == []
    assert (row["skipped_fires"], row["last_skipped_at"], row["last_fired_at"]) == (4, latest, None)
    assert row["next_fire_at"] == latest + timedelta(hours=1)


async def test_misfire_run_once_fires_one_catch_up(harness: Harness) -> None:
    await harness.start()
    cron, first, latest = await missed_since(harness.pool, hours=3)
    schedule_id, _ = await insert_schedule(harness.pool, cron=cron, policy="run_once", due=first)
    row = await moved_on(harness.pool, schedule_id)
    jobs = await fired_jobs(harness.pool, schedule_id)
    assert [j["idempotency_key"] for j in jobs] == [f"cron:{schedule_id}:{latest.isoformat()}"]
    assert (row["skipped_fires"], row["last_skipped_at"], row["last_fired_at"]) == (
        3, latest - timedelta(hours=1), latest)
    assert row["next_fire_at"] == latest + timedelta(hours=1)


async def test_a_disabled_schedule_does_not_fire(harness: Harness) -> None:
    await harness.start()
    disabled, _ = await insert_schedule(harness.pool, enabled=False)
    enabled, _ = await insert_schedule(harness.pool)
    await moved_on(harness.pool, enabled)  # the poll after which the disabled one would have fired too
    assert await fired_jobs(harness.pool, disabled) == []


async def test_a_schedule_that_cannot_fire_stops_alone(harness: Harness) -> None:
    # A zone that a tzdata update removed (the api admits only known ones): that schedule stops, the rest go on.
    await harness.start()
    broken, _ = await insert_schedule(harness.pool)
    await harness.pool.execute("UPDATE schedules SET timezone = 'Gone/Away' WHERE id = $1", broken)
    working, _ = await insert_schedule(harness.pool)
    await moved_on(harness.pool, working)
    assert len(await fired_jobs(harness.pool, working)) == 1
    row = await poll_until(lambda: schedule_row(harness.pool, broken), lambda r: r["next_fire_at"] is None)
    assert row["last_fired_at"] is None and await fired_jobs(harness.pool, broken) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_minute_for_three_minutes_with_a_failover(harness: Harness) -> None:
    # Real minute boundaries: two replicas, the first stopped after the first fire; three fires, each once.
    await harness.start()
    await harness.start()
    now = await harness.pool.fetchval("SELECT now()")
    first = next_fire("* * * * *", zone("UTC"), now)
    assert first is not None
    schedule_id, _ = await insert_schedule(harness.pool, cron="* * * * *", due=first)

    async def keys() -> list[str]:
        return [j["idempotency_key"] for j in await fired_jobs(harness.pool, schedule_id)]

    await poll_until(keys, lambda k: len(k) >= 1, timeout_s=75, every_s=0.1)
    await harness.services[0].stop()  # whichever led: a stop gives the lease up
    await poll_until(keys, lambda k: len(k) >= 3, timeout_s=140, every_s=0.1)
    jobs = await fired_jobs(harness.pool, schedule_id)
    expected = [first + timedelta(minutes=i) for i in range(3)]
    assert [j["idempotency_key"] for j in jobs] == [f"cron:{schedule_id}:{t.isoformat()}" for t in expected]
    lags = [(j["created_at"] - t).total_seconds() for j, t in zip(jobs, expected, strict=True)]
    assert all(0 <= lag < 2.0 for lag in lags), lags  # target p99 < 1 s: 250 ms polls, lease handed over at stop
