"""The analytics service: consumes every job topic (group `analytics`) into the audit log and counters."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import asyncpg
from aiokafka import ConsumerRecord

from services.analytics import metrics
from services.analytics.recorder import EventRecorder
from shared.db.pool import close_pool, pool_for
from shared.events import JOB_TOPICS
from shared.http_server import HttpServer, health_app
from shared.kafka.consumer import ConsumerLoop, decode_records
from shared.settings import AnalyticsSettings
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

GROUP_ID = "analytics"


class AnalyticsService:
    """Start: Postgres pool, health server, consumer loop. Stop: finish the batch in hand, then close."""

    name = "analytics"

    def __init__(self, settings: AnalyticsSettings) -> None:
        self._settings = settings
        self._tasks = TaskGroupOwner(self.name)
        self._pool: asyncpg.Pool | None = None
        self._recorder: EventRecorder | None = None
        self._consumer: ConsumerLoop | None = None
        self._http: HttpServer | None = None
        self._stopping = False

    @property
    def failed(self) -> asyncio.Event:
        """Set when a background task crashed."""
        return self._tasks.failed

    @property
    def consumer(self) -> ConsumerLoop | None:
        """The consumer loop (tests wait on its `assigned` event)."""
        return self._consumer

    async def start(self) -> None:
        """Connect to Postgres (fails fast if it does not answer), then serve and consume."""
        s = self._settings
        self._pool = await pool_for(s, session_reset=False)  # no session state is left on a connection here
        self._recorder = EventRecorder(self._pool, timeout_s=s.db_command_timeout_s)
        self._http = HttpServer(health_app(self._ready), s.host, s.analytics_port)
        await self._http.start()
        self._tasks.spawn("http", self._http.watch())
        self._consumer = ConsumerLoop(
            s,
            topics=JOB_TOPICS,
            group_id=GROUP_ID,
            handler=self._handle,
            client_id=f"analytics-{socket.gethostname()}-{os.getpid()}",
            auto_offset_reset="earliest",
        )
        self._tasks.spawn("consumer", self._consumer.run())

    async def stop(self) -> None:
        """Let the current batch finish (bounded by the drain timeout), then close everything."""
        self._stopping = True
        if self._consumer is not None:
            self._consumer.stop()
            if not await self._tasks.wait("consumer", self._settings.drain_timeout_s):
                log.warning("analytics consumer did not finish its batch in time; cancelling")
        await self._tasks.cancel_all()
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await close_pool(pool)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        assert self._recorder is not None
        envelopes = decode_records(records)
        if len(envelopes) < len(records):
            metrics.RECORDS_UNDECODABLE.inc(len(records) - len(envelopes))
        if not envelopes:
            return
        started = time.perf_counter()
        result = await self._recorder.record(envelopes)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
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
            await pool.fetchval("SELECT 1", timeout=2)
        except (asyncpg.PostgresError, OSError, TimeoutError, asyncpg.InterfaceError):
            return False
        return True

