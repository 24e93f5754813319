"""Finished webhook deliveries are deleted after WEBHOOK_RETENTION_DAYS; pending ones never."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg

from services.notifier.settings import NotifierServiceSettings
from services.notifier.webhook_retention import WebhookRetention
from shared.events import utcnow
from tests.fixtures.resources import SettingsFactory

INSERT = """
INSERT INTO webhook_deliveries (id, tenant, job_id, event_type, event_id, url, body, state, updated_at)
VALUES ($1, 'default', $2, 'job_completed', $3, 'http://127.0.0.1:9/hook', '{}', $4, $5)
"""


async def delivery(pool: asyncpg.Pool, state: str, age: timedelta) -> uuid.UUID:
    delivery_id = uuid.uuid4()
    await pool.execute(INSERT, delivery_id, uuid.uuid4(), uuid.uuid4(), state, utcnow() - age)
    return delivery_id


async def test_finished_deliveries_past_their_age_go_in_batches_and_the_rest_stay(
    db_pool: asyncpg.Pool, service_settings: SettingsFactory
) -> None:
    settings = service_settings(NotifierServiceSettings, webhook_retention_days=30, webhook_retention_batch_rows=2)
    old, recent = timedelta(days=31), timedelta(days=29)
    finished = ("delivered", "failed", "delivered", "failed", "failed")
    expired = [await delivery(db_pool, state, old) for state in finished]
    kept = [
        await delivery(db_pool, "pending", old),  # still being tried: never deleted
        await delivery(db_pool, "delivered", recent),
        await delivery(db_pool, "failed", recent),
    ]
    # Five rows in batches of two: the pass goes on until a batch comes back short.
    assert await WebhookRetention(db_pool, settings, asyncio.Event()).clean_once() == len(expired)
    left = {r["id"] for r in await db_pool.fetch("SELECT id FROM webhook_deliveries")}
    assert left == set(kept)


async def test_a_retention_of_zero_days_keeps_everything_and_a_stop_ends_the_loop(
    db_pool: asyncpg.Pool, service_settings: SettingsFactory
) -> None:
    stopping = asyncio.Event()
    keep = service_settings(NotifierServiceSettings, webhook_retention_days=0)
    await delivery(db_pool, "delivered", timedelta(days=400))
    await asyncio.wait_for(WebhookRetention(db_pool, keep, stopping).run(), timeout=1)  # returns at once
    assert await db_pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 1
    hourly = service_settings(NotifierServiceSettings, webhook_retention_days=30)
    loop = asyncio.create_task(WebhookRetention(db_pool, hourly, stopping).run())
    stopping.set()
    await asyncio.wait_for(loop, timeout=2)
