"""The notifier service: every replica reads every job event and alert and fans them out to its clients."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from services.notifier import metrics
from services.notifier.app import build_app
from services.notifier.hub import Hub
from services.notifier.messages import Delivery, alert_delivery, job_delivery
from services.notifier.settings import NotifierServiceSettings
from shared import events
from shared.db.pool import close_pool, pool_for
from shared.http_server import HttpServer
from shared.kafka.consumer import ConsumerLoop
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

# Without pressure, still let the senders run this often during a large batch.
_YIELD_EVERY = 128


class NotifierService:
    """Start: Postgres pool (API keys), the hub, the HTTP/WebSocket server, the consumer."""

    name = "notifier"

    def __init__(self, settings: NotifierServiceSettings) -> None:
        self._settings = settings
        self._tasks = TaskGroupOwner(self.name)
        self.hub = Hub(buffer_size=settings.client_buffer, max_subscriptions=settings.max_subscriptions)
        self._alerts_topic = events.topic_name(settings.kafka_topic_prefix, events.ALERTS_TOPIC)
        self._pool: asyncpg.Pool | None = None
        self._consumer: ConsumerLoop | None = None
        self._http: HttpServer | None = None
        self._stopping = False

    @property
    def failed(self) -> asyncio.Event:
        """Set when a background task crashed."""
        return self._tasks.failed

    @property
    def consumer(self) -> ConsumerLoop | None:
        """The consumer loop (tests wait on its `assigned` event: it starts at the latest offsets)."""
        return self._consumer

    async def start(self) -> None:
        """Connect to Postgres, then consume and serve."""
        s = self._settings
        self._pool = await pool_for(s)
        # No group: each replica reads every partition from the newest offset and commits nothing.
        self._consumer = ConsumerLoop(
            s,
            topics=events.ALL_TOPICS,
            group_id=None,
            handler=self._handle,
            client_id=f"notifier-{socket.gethostname()}-{os.getpid()}",
            auto_offset_reset="latest",
        )
        self._tasks.spawn("consumer", self._consumer.run())
        app = build_app(self.hub, self._require_pool, s, self._ready)
        self._http = HttpServer(app, s.host, s.notifier_port)
        await self._http.start()
        self._tasks.spawn("http", self._http.watch())

    async def stop(self) -> None:
        """End every client stream (code 1012), stop consuming, then close the server and the pool."""
        self._stopping = True
        self.hub.close_all()
        if self._consumer is not None:
            self._consumer.stop()
            await self._tasks.wait("consumer", timeout_s=10)
        await self._tasks.cancel_all()
        if self._http is not None:
            await self._http.stop()
            self._http = None
        self.hub.close_all()  # streams that opened during the shutdown
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await close_pool(pool)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        # Each event type has its own topic, so one job's events can arrive out of order;
        # within a batch, at least, send them in the order they happened.
        deliveries = sorted(filter(None, map(self._delivery_of, records)), key=lambda pair: pair[0])
        for i, (_, delivery) in enumerate(deliveries, 1):
            metrics.EVENTS_IN.labels(delivery.kind).inc()
            # The fan-out never waits on a socket, but a burst must not fill the buffers of
            # clients that are keeping up: give their senders a turn when buffers fill.
            if self.hub.deliver(delivery) or i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _delivery_of(self, record: ConsumerRecord) -> tuple[float, Delivery] | None:
        """The message of a record and when it happened (epoch seconds); None for junk."""
        try:
            if record.topic == self._alerts_topic:
                alert: Any = orjson.loads(record.value)
                at = record.timestamp / 1000 if record.timestamp is not None else time.time()
                return at, alert_delivery(alert)
            envelope = events.decode(record.value, events.tenant_of(record.headers))
            return envelope.occurred_at.timestamp(), job_delivery(envelope)
        except (ValueError, TypeError) as exc:  # orjson and pydantic errors are ValueErrors
            metrics.UNDECODABLE.inc()
            log.error("skipping undecodable record %s:%s@%s: %s", record.topic, record.partition, record.offset, exc)
            return None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise asyncpg.InterfaceError("the notifier is not connected to Postgres")
        return self._pool

    async def _ready(self) -> bool:
        if self._consumer is None or not self._consumer.assigned.is_set() or self._pool is None:
            return False
        try:
            await self._pool.fetchval("SELECT 1", timeout=2)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False
        return True

