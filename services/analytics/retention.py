"""The retention cleaner: deletes audit rows and aggregate rows past their age, in short batches.

One replica at a time (a Postgres advisory lock held for the pass); each batch is one short
statement that skips rows a recording batch holds, with a pause between batches, so ingestion
is never blocked behind it. stats_day is kept for good.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.analytics import metrics, sql
from shared.events import utcnow
from shared.settings import AnalyticsSettings
from shared.waiting import every, set_within

log = logging.getLogger(__name__)

ACQUIRE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Retention:
    """How long each table keeps its rows (a table not listed, or with no age, is kept)."""

    ages: dict[str, timedelta]

    @classmethod
    def of(cls, s: AnalyticsSettings) -> Retention:
        """The ages of the settings (0 days: kept forever)."""
        days = {
            "job_events": s.audit_retention_days,
            "stats_minute": s.stats_minute_retention_days,
            "stats_hour": s.stats_hour_retention_days,
            "worker_stats_minute": s.worker_stats_retention_days,
        }
        return cls({table: timedelta(days=d) for table, d in days.items() if d > 0})


class RetentionCleaner:
    """Runs a pass every `retention_interval_s` (the first one interval after start) until `stopping`."""

    def __init__(self, pool: asyncpg.Pool, settings: AnalyticsSettings, stopping: asyncio.Event) -> None:
        self._pool = pool
        self._retention = Retention.of(settings)
        self._interval_s = settings.retention_interval_s
        self._batch = settings.retention_batch_rows
        self._pause_s = settings.retention_pause_s
        self._timeout_s = settings.db_command_timeout_s
        self._stopping = stopping

    async def run(self) -> None:
        """Pass after pass; a failed pass (Postgres away) is logged and tried again next interval."""
        async for _ in every(self._interval_s, self._stopping):
            try:
                deleted = await self.clean_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("retention pass failed (next in %.0fs): %r", self._interval_s, exc)
                continue
            if deleted:
                log.info("retention deleted %s", deleted)

    async def clean_once(self, now: datetime | None = None) -> dict[str, int] | None:
        """One pass over every table with an age; rows deleted by table, None if another replica holds the lock."""
        if not self._retention.ages:
            return {}
        at = now or utcnow()
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            if not await sql.try_lock(conn, timeout_s=self._timeout_s):
                return None
            try:
                return {
                    table: await self._clean(conn, table, at - age) for table, age in self._retention.ages.items()
                }
            finally:
                await self._unlock(conn)

    async def _clean(self, conn: asyncpg.Connection, table: str, before: datetime) -> int:
        total = 0
        while True:
            n = await sql.delete_expired(conn, table, before, self._batch, timeout_s=self._timeout_s)
            total += n
            metrics.RETENTION_DELETED.labels(table).inc(n)
            if n < self._batch or await set_within(self._stopping, self._pause_s):
                return total

    async def _unlock(self, conn: asyncpg.Connection) -> None:
        try:
            await sql.unlock(conn, timeout_s=self._timeout_s)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            # The lock is the session's: a connection that cannot unlock must not go back to the pool.
            conn.terminate()
            raise
