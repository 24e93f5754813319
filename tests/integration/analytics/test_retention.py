"""The retention cleaner on rows aged by direct inserts: what goes, what stays, batches, one replica, no waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from services.analytics import sql
from services.analytics.retention import RetentionCleaner
from services.analytics.service import AnalyticsService
from shared.settings import AnalyticsSettings
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import SettingsFactory

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
KEPT_FOREVER = NOW - 400 * DAY
# (table, age of rows that go, age of rows that stay) under the default settings.
AGES = {
    "job_events": (31 * DAY, 29 * DAY),
    "stats_minute": (3 * DAY, DAY),
    "stats_hour": (91 * DAY, 89 * DAY),
    "worker_stats_minute": (3 * DAY, DAY),
}


async def age_rows(pool: asyncpg.Pool, table: str, at: datetime, n: int) -> None:
    """`n` rows of `table` at time `at` (each its own key)."""
    if table == "job_events":
        await pool.execute(
            "INSERT INTO job_events (event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope)"
            " SELECT gen_random_uuid(), gen_random_uuid(), 'default', 'completed', 'q', 't', 1, $1, '{}'"
            " FROM generate_series(1, $2)", at, n)
    elif table == "worker_stats_minute":
        await pool.execute(
            "INSERT INTO worker_stats_minute (worker_id, bucket, completed)"
            " SELECT 'w' || i, $1, 1 FROM generate_series(1, $2) AS i", at, n)
    else:
        await pool.execute(
            f"INSERT INTO {table} (tenant, queue, job_type, bucket, completed)"
            " SELECT 'default', 'q' || i, 't', $1, 1 FROM generate_series(1, $2) AS i", at, n)


async def count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


def deleted_metric(table: str) -> float:
    return REGISTRY.get_sample_value("conveyor_analytics_retention_deleted_total", {"table": table}) or 0.0


@pytest.fixture
def settings(service_settings: SettingsFactory) -> AnalyticsSettings:
    # Small batches, so a pass takes several statements.
    return service_settings(AnalyticsSettings, retention_batch_rows=4, retention_pause_s=0.0)


@pytest.fixture
async def aged(db_pool: asyncpg.Pool) -> asyncpg.Pool:
    """Per table 10 expired rows and 3 within the age; stats_day rows over a year old."""
    for table, (gone, kept) in AGES.items():
        await age_rows(db_pool, table, NOW - gone, 10)
        await age_rows(db_pool, table, NOW - kept, 3)
    await age_rows(db_pool, "stats_day", KEPT_FOREVER, 5)
    return db_pool


async def test_a_pass_deletes_expired_rows_in_batches_and_keeps_the_rest(
    aged: asyncpg.Pool, settings: AnalyticsSettings
) -> None:
    before = {table: deleted_metric(table) for table in AGES}
    cleaner = RetentionCleaner(aged, settings, asyncio.Event())
    assert await cleaner.clean_once(NOW) == dict.fromkeys(AGES, 10)
    for table in AGES:
        assert await count(aged, table) == 3, table
        assert deleted_metric(table) == before[table] + 10
    assert await count(aged, "stats_day") == 5  # kept for good
    assert await cleaner.clean_once(NOW) == dict.fromkeys(AGES, 0)


async def test_an_age_of_zero_keeps_a_table(aged: asyncpg.Pool, service_settings: SettingsFactory) -> None:
    settings = service_settings(AnalyticsSettings, audit_retention_days=0, stats_hour_retention_days=0)
    deleted = await RetentionCleaner(aged, settings, asyncio.Event()).clean_once(NOW)
    assert deleted == {"stats_minute": 10, "worker_stats_minute": 10}
    assert (await count(aged, "job_events"), await count(aged, "stats_hour")) == (13, 13)


async def test_one_replica_at_a_time(aged: asyncpg.Pool, settings: AnalyticsSettings) -> None:
    cleaner = RetentionCleaner(aged, settings, asyncio.Event())
    async with aged.acquire() as other:
        assert await sql.try_lock(other, timeout_s=5)
        try:
            assert await cleaner.clean_once(NOW) is None
            assert await count(aged, "job_events") == 13
        finally:
            await sql.unlock(other, timeout_s=5)
    assert await cleaner.clean_once(NOW) is not None


async def test_rows_a_recording_batch_holds_are_skipped_not_waited_for(
    aged: asyncpg.Pool, settings: AnalyticsSettings
) -> None:
    cleaner = RetentionCleaner(aged, settings, asyncio.Event())
    async with aged.acquire() as recording, recording.transaction():
        # A late event's upsert holding an expired minute row (as the recorder's does on conflict).
        await recording.execute(
            "UPDATE stats_minute SET completed = completed + 1 WHERE queue = 'q1' AND bucket = $1",
            NOW - AGES["stats_minute"][0])
        began = time.monotonic()
        deleted = await asyncio.wait_for(cleaner.clean_once(NOW), timeout=5)
        assert time.monotonic() - began < 2
        assert deleted is not None and deleted["stats_minute"] == 9
    assert await count(aged, "stats_minute") == 4
    again = await cleaner.clean_once(NOW)
    assert again is not None and again["stats_minute"] == 1


@pytest.fixture
def frequent(service_settings: SettingsFactory, kafka_topics: dict[str, str]) -> AnalyticsSettings:
    return service_settings(AnalyticsSettings, retention_interval_s=0.2)


@pytest.fixture
async def analytics(frequent: AnalyticsSettings) -> AsyncIterator[AnalyticsService]:
    service = AnalyticsService(frequent)
    await service.start()
    yield service
    await service.stop()
    assert not service.failed.is_set()


async def test_the_service_runs_the_cleaner_and_shows_its_metrics(
    db_pool: asyncpg.Pool, analytics: AnalyticsService, frequent: AnalyticsSettings
) -> None:
    now = datetime.now(UTC)
    await age_rows(db_pool, "job_events", now - 31 * DAY, 7)
    await age_rows(db_pool, "job_events", now - DAY, 2)

    async def remaining() -> int:
        return await count(db_pool, "job_events")

    await poll_until(remaining, lambda n: n == 2, timeout_s=20)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{frequent.analytics_port}") as http:
        text = (await http.get("/metrics", timeout=5)).text
    assert 'conveyor_analytics_retention_deleted_total{table="job_events"}' in text
    assert "conveyor_analytics_lag_seconds " in text


def test_settings_read_their_documented_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "7")
    monkeypatch.setenv("STATS_MINUTE_RETENTION_DAYS", "1.5")
    monkeypatch.setenv("STATS_HOUR_RETENTION_DAYS", "0")
    monkeypatch.setenv("WORKER_STATS_RETENTION_DAYS", "3")
    s = AnalyticsSettings()
    assert (s.audit_retention_days, s.stats_minute_retention_days, s.stats_hour_retention_days,
            s.worker_stats_retention_days) == (7, 1.5, 0, 3)
    fresh = AnalyticsSettings.model_construct()
    assert (fresh.audit_retention_days, fresh.stats_minute_retention_days, fresh.stats_hour_retention_days,
            fresh.worker_stats_retention_days) == (30, 2, 90, 2)
