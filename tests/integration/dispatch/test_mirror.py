"""The scheduler's queue mirror against real Postgres and Valkey: after Redis lost everything, the
`queues` rows come back into the config hashes and the rate logs keep the starts of their windows."""

from __future__ import annotations

import asyncpg

from services.scheduler.queue_mirror import sync_queues
from shared.dispatch.config import DispatchConfig, Limit
from shared.dispatch.protocol import Dispatcher
from tests.integration.dispatch.support import job
from tests.integration.scheduler.support import insert_job

QUEUE_CONFIG = {"rateLimit": {"limit": 3, "periodMs": 60_000}, "keyRateLimit": {"limit": 1, "periodMs": 60_000},
                "concurrency": 7}


async def lose_redis(d: Dispatcher) -> None:
    """What FLUSHALL does to this test's keys (the session's Valkey is shared by the tests)."""
    keys = [k async for k in d.redis.scan_iter(match=f"*{d.keys.prefix}*")]
    if keys:
        await d.redis.delete(*keys)


async def test_a_lost_mirror_comes_back_with_the_starts_of_its_windows(
    db_pool: asyncpg.Pool, dispatcher: Dispatcher
) -> None:
    await db_pool.execute(
        "INSERT INTO queues (name, config, paused, updated_at) VALUES"
        " ('q', $1::jsonb, false, now() - interval '1 hour'), ('idle', '{}'::jsonb, true, now() - interval '1 hour')",
        QUEUE_CONFIG,
    )
    # Two starts of the last minute in Postgres: one under rate-limit key "A".
    for key in ("A", None):
        job_id = await insert_job(db_pool, status="running", attempts=1, state=(1, 2))
        await db_pool.execute("UPDATE jobs SET rate_limit_key = $2 WHERE id = $1", job_id, key)
        await db_pool.execute(
            "INSERT INTO job_attempts (job_id, attempt, status, started_at)"
            " VALUES ($1, 1, 'running', now() - interval '5 s')",
            job_id,
        )
    await lose_redis(dispatcher)
    async with db_pool.acquire() as conn:
        assert await sync_queues(conn, dispatcher, grace_s=1.0) == 2
        assert await sync_queues(conn, dispatcher, grace_s=1.0) == 0  # the same again: nothing to do
    assert await dispatcher.dispatch_config("q") == DispatchConfig.from_stored(QUEUE_CONFIG, False)
    assert (await dispatcher.dispatch_config("idle")).paused
    # The window is not fresh: 3 per minute, 2 already started; key A already used its one.
    a, b, c, d = job(rate_limit_key="A"), job(), job(), job()
    await dispatcher.push([(s, 0) for s in (a, b, c, d)])
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 10, 60_000, "w")] == [b.job_id]
    assert await dispatcher.pop(["q"], 10, 60_000, "w") == []


async def test_a_mirror_that_differs_is_rewritten_without_refilling_its_logs(
    db_pool: asyncpg.Pool, dispatcher: Dispatcher
) -> None:
    await db_pool.execute(
        "INSERT INTO queues (name, config, updated_at) VALUES ('q', $1::jsonb, now() - interval '1 hour')",
        QUEUE_CONFIG,
    )
    await dispatcher.configure("q", DispatchConfig(rate_limit=Limit(1, 1000)))
    async with db_pool.acquire() as conn:
        assert await sync_queues(conn, dispatcher, grace_s=1.0) == 1
    assert (await dispatcher.dispatch_config("q")).rate_limit == Limit(3, 60_000)
    assert await dispatcher.redis.exists(dispatcher.keys.queue("q").rlog) == 0
