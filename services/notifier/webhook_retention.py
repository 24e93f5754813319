"""Deletes finished webhook deliveries past their age (WEBHOOK_RETENTION_DAYS), in short batches.

Every replica may run it: each batch is one short statement over rows nobody holds (SKIP LOCKED),
and deleting what another replica just deleted deletes nothing. Pending deliveries are never
deleted: the sender ends each one delivered or failed first.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg

from services.notifier import metrics
from services.notifier.settings import NotifierServiceSettings
from services.notifier.store import webhooks as store
from shared.events import utcnow
from shared.waiting import every, set_within

log = logging.getLogger(__name__)

# Between two batches of one pass, so the deletes never crowd out the sender's statements.
BATCH_PAUSE_S = 0.5


class WebhookRetention:
    """A pass every `webhook_retention_interval_s` (the first one after the first interval) until `stopping`."""

    def __init__(self, pool: asyncpg.Pool, settings: NotifierServiceSettings, stopping: asyncio.Event) -> None:
        self._pool = pool
        self._age = timedelta(days=settings.webhook_retention_days)
        self._interval_s = settings.webhook_retention_interval_s
        self._batch = settings.webhook_retention_batch_rows
        self._timeout_s = settings.db_command_timeout_s
        self._stopping = stopping

    async def run(self) -> None:
        """Pass after pass; a failed pass (Postgres away) is logged and tried again next interval."""
        if not self._age:
            return  # kept for good
        async for _ in every(self._interval_s, self._stopping):
            try:
                deleted = await self.clean_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("webhook retention pass failed (next in %.0fs): %r", self._interval_s, exc)
                continue
            if deleted:
                log.info("webhook retention deleted %d finished deliveries", deleted)

    async def clean_once(self, now: datetime | None = None) -> int:
        """One pass: every finished delivery last tried more than the retention age before `now`; how many went."""
        before = (now or utcnow()) - self._age
        total = 0
        while True:
            n = await store.delete_finished(self._pool, before, self._batch, timeout_s=self._timeout_s)
            total += n
            metrics.WEBHOOKS_EXPIRED.inc(n)
            if n < self._batch or await set_within(self._stopping, BATCH_PAUSE_S):
                return total
