"""The analytics service: consumes every job topic (group `analytics`) into the audit log and aggregates;
its retention cleaner trims both by age."""

from __future__ import annotations

import logging
import os
import socket
import time

import asyncpg
from aiokafka import ConsumerRecord

from services.analytics import metrics, sql
from services.analytics.alerts.runtime import AlertsRuntime
from services.analytics.recorder import EventRecorder
from services.analytics.retention import RetentionCleaner
from shared.db.pool import close_pool, pool_for
from shared.events import JOB_TOPICS
from shared.http_server import health_app
from shared.kafka.consumer import ConsumerLoop, decode_records_with_values
from shared.service import BaseService
from shared.settings import AnalyticsSettings

log = logging.getLogger(__name__)

GROUP_ID = "analytics"
READY_PING_S = 2.0
MAX_RECORDS = 5000
IN_FLIGHT = 2


class AnalyticsService(BaseService):
    """Postgres pool, health server, consumer loop, retention cleaner; stop lets the batch in hand finish."""

    name = "analytics"

    def __init__(self, settings: AnalyticsSettings) -> None:
        super().__init__(settings)
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._recorder: EventRecorder | None = None
        self._consumer: ConsumerLoop | None = None

    @property
    def consumer(self) -> ConsumerLoop | None:
        """The consumer loop (tests wait on its `assigned` event)."""
        return self._consumer

    async def setup(self) -> None:
        """Connect to Postgres (fails fast if it does not answer), then serve and consume."""
        s = self._settings
        # No session state is left on a connection here.
        self._pool = await self.open(pool_for(s, session_reset=False), close=close_pool)
        self._recorder = EventRecorder(self._pool, timeout_s=s.db_command_timeout_s)
        await self.serve_http(health_app(self._ready), s.analytics_port)
        self._consumer = ConsumerLoop(
            s,
            topics=JOB_TOPICS,
            group_id=GROUP_ID,
            handler=self._handle,
            client_id=f"analytics-{socket.gethostname()}-{os.getpid()}",
            auto_offset_reset="earliest",
            # A backlog is recorded in larger transactions (a batch's cost grows slower than its
            # size: its aggregate rows are per group and minute, not per event).
            max_records=MAX_RECORDS,
            on_idle=metrics.LAG.idle,
            # The next batch is decoded while Postgres records the one before (batches commute:
            # the audit insert skips what is there, the aggregates only add).
            in_flight=IN_FLIGHT,
        )
        self.spawn("consumer", self._consumer.run(), drain=self._consumer.stop)
        self.spawn("retention", RetentionCleaner(self._pool, s, self.stopping).run(), drain=True)
        self.spawn("alerts", AlertsRuntime(self._pool, s).run(self.stopping), drain=True)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        assert self._recorder is not None
        decoded = decode_records_with_values(records)
        envelopes = [envelope for envelope, _ in decoded]
        if len(envelopes) < len(records):
            metrics.RECORDS_UNDECODABLE.inc(len(records) - len(envelopes))
        if not envelopes:
            return
        batch = metrics.LAG.begin(r.timestamp for r in records)
        try:
            started = time.perf_counter()
            result = await self._recorder.record(envelopes, {e.event_id: raw for e, raw in decoded})
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        finally:
            metrics.LAG.end(batch)
        for kind, n in result.inserted.items():
            metrics.EVENTS_RECORDED.labels(kind).inc(n)
        if result.duplicates:
            metrics.DUPLICATES_SKIPPED.inc(result.duplicates)
        if result.rejected:
            metrics.EVENTS_REJECTED.inc(result.rejected)

    async def _ready(self) -> bool:
        pool = self._pool
        if pool is None:
            return False
        try:
            await sql.ping(pool, timeout_s=READY_PING_S)
        except (asyncpg.PostgresError, OSError, TimeoutError, asyncpg.InterfaceError):
            return False
        return True

