"""The notifier service: every replica reads every job event and alert and fans them out to its clients."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from services.notifier import metrics, sql
from services.notifier.app import build_app
from services.notifier.hub import Hub
from services.notifier.messages import (
    Delivery,
    alert_delivery,
    alert_event_id,
    batch_delivery,
    job_delivery,
    worker_delivery,
)
from services.notifier.settings import NotifierServiceSettings
from services.notifier.stats import QueueStats, run_ticker
from services.notifier.webhook_intake import GROUP as WEBHOOK_GROUP
from services.notifier.webhook_intake import TOPICS as WEBHOOK_TOPICS
from services.notifier.webhook_intake import UrlPolicy, WebhookIntake
from services.notifier.webhook_retention import WebhookRetention
from services.notifier.webhook_sender import WebhookSender
from shared import events
from shared.db.pool import close_pool, pool_for
from shared.kafka.consumer import ConsumerLoop
from shared.service import BaseService

log = logging.getLogger(__name__)

# Without pressure, still let the senders run this often during a large batch.
_YIELD_EVERY = 128
READY_PING_S = 2.0


class NotifierService(BaseService):
    """Postgres pool (API keys, webhooks), the hub, the HTTP/WebSocket server, the fan-out consumer,
    and the webhooks: their consumer (a group: durable) and their sender.

    Stop: every client stream ends with code 1012 first, then the consumers stop and the sender
    records the tries under way, then the server and the pool close.
    """

    name = "notifier"

    def __init__(self, settings: NotifierServiceSettings) -> None:
        super().__init__(settings)
        self._settings = settings
        self.hub = Hub(buffer_size=settings.client_buffer, max_subscriptions=settings.max_subscriptions,
                       ring_size=settings.event_ring)
        self.stats = QueueStats(self.hub.ring.last_event_for)
        self._alerts_topic = events.topic_name(settings.kafka_topic_prefix, events.ALERTS_TOPIC)
        self._workers_topic = events.topic_name(settings.kafka_topic_prefix, events.WORKERS_TOPIC)
        self._batches_topic = events.topic_name(settings.kafka_topic_prefix, events.BATCHES_TOPIC)
        self._pool: asyncpg.Pool | None = None
        self._consumer: ConsumerLoop | None = None
        self._webhook_consumer: ConsumerLoop | None = None
        self._sender: WebhookSender | None = None

    @property
    def consumer(self) -> ConsumerLoop | None:
        """The consumer loop (tests wait on its `assigned` event: it starts at the latest offsets)."""
        return self._consumer

    async def setup(self) -> None:
        """Connect to Postgres (fails fast if it does not answer), then consume and serve."""
        s = self._settings
        self._pool = await self.open(pool_for(s), close=close_pool)
        # Runs after the server stopped (closes run in reverse): streams opened during the stop.
        self.on_close("end the streams opened during the stop", self._end_streams)
        # No group: each replica reads every partition from the newest offset and commits nothing.
        self._consumer = ConsumerLoop(
            s,
            topics=(*events.ALL_TOPICS, events.WORKERS_TOPIC, events.BATCHES_TOPIC),
            group_id=None,
            handler=self._handle,
            client_id=f"notifier-{socket.gethostname()}-{os.getpid()}",
            auto_offset_reset="latest",
        )
        self.spawn("consumer", self._consumer.run(), drain=self._consumer.stop)
        self.spawn("live-since", self._mark_live(self._consumer), drain=False)
        if s.queue_stats_enabled:
            ticker = run_ticker(self.stats, self.hub.deliver, s.queue_stats_interval_s, self.stopping)
            self.spawn("queue-stats", ticker, drain=True)
        self._start_webhooks(self._pool)
        await self.serve_http(build_app(self.hub, self._require_pool, s, self._ready), s.notifier_port)

    def _start_webhooks(self, pool: asyncpg.Pool) -> None:
        """callbackUrl deliveries: a consumer that stores them, a sender that makes them.

        Alert-rule webhooks (later) store their deliveries the same way (store.webhooks.enqueue,
        then `sender.wake()`): the sender does not care what an event is about.
        """
        s = self._settings
        self._sender = WebhookSender(pool, s)
        intake = WebhookIntake(self._require_pool, UrlPolicy(s.webhook_allowed_hosts), s.kafka_topic_prefix,
                               self._sender.wake)
        # A group, so events are not lost while no replica runs; a new group starts at the newest
        # events (a first deployment does not call back for history).
        self._webhook_consumer = ConsumerLoop(
            s,
            topics=WEBHOOK_TOPICS,
            group_id=f"{s.kafka_topic_prefix}{WEBHOOK_GROUP}",
            handler=intake.handle,
            client_id=f"notifier-webhooks-{socket.gethostname()}-{os.getpid()}",
            auto_offset_reset="latest",
        )
        self.spawn("webhook-consumer", self._webhook_consumer.run(), drain=self._webhook_consumer.stop)
        self.spawn("webhook-sender", self._sender.run(), drain=self._sender.stop)
        self.spawn("webhook-retention", WebhookRetention(pool, s, self.stopping).run(), drain=True)

    async def _mark_live(self, consumer: ConsumerLoop) -> None:
        """Note when the ring began to fill (resume settles on it: services/notifier/resume.py)."""
        await consumer.assigned.wait()
        self.hub.live_since = time.monotonic()

    @property
    def webhook_consumer(self) -> ConsumerLoop | None:
        """The webhook consumer loop (tests wait on its `assigned` event, as for `consumer`)."""
        return self._webhook_consumer

    async def drain(self) -> None:
        """End every client stream (code 1012: restarting), then let the consumer finish its batch."""
        self.hub.close_all()
        await super().drain()

    async def _end_streams(self) -> None:
        self.hub.close_all()

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        # Each event type has its own topic, so one job's events can arrive out of order;
        # within a batch, at least, send them in the order they happened.
        deliveries = sorted(filter(None, map(self._delivery_of, records)), key=lambda d: d.occurred_at)
        ring = self.hub.ring
        for i, delivery in enumerate(deliveries, 1):
            metrics.EVENTS_IN.labels(delivery.kind).inc()
            if delivery.event_id is not None and delivery.event_id in ring:
                continue  # delivered already (a producer's retry wrote it twice)
            self.stats.record(delivery)
            # The fan-out never waits on a socket, but a burst must not fill the buffers of
            # clients that are keeping up: give their senders a turn when buffers fill.
            if self.hub.deliver(delivery) or i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _delivery_of(self, record: ConsumerRecord) -> Delivery | None:
        """The message of a record (`occurred_at`: when it happened, epoch seconds); None for junk."""
        at = record.timestamp / 1000 if record.timestamp is not None else time.time()
        try:
            if record.topic == self._alerts_topic:
                alert: Any = orjson.loads(record.value)
                position = f"{record.topic}:{record.partition}:{record.offset}"
                delivery = alert_delivery(alert, event_id=alert_event_id(alert, position), occurred_at=at)
                queue = alert.get("queue") if isinstance(alert, dict) else None
                if delivery.tenant is None and isinstance(queue, str):  # queue-level: DESIGN §10
                    delivery = dataclasses.replace(delivery, audience=self.hub.tenants_of_queue(queue))
                return delivery
            if record.topic == self._workers_topic:
                worker = worker_delivery(orjson.loads(record.value))
                if worker is None:
                    raise ValueError("not a worker event")
                return dataclasses.replace(worker, occurred_at=at)
            if record.topic == self._batches_topic:
                batch = batch_delivery(orjson.loads(record.value), events.tenant_of(record.headers))
                if batch is None:
                    raise ValueError("not a batch event")
                return dataclasses.replace(batch, occurred_at=at)
            return job_delivery(events.decode_record(record.value, record.headers))
        except (ValueError, TypeError) as exc:  # orjson and pydantic errors are ValueErrors
            metrics.UNDECODABLE.inc()
            log.error("skipping undecodable record %s:%s@%s: %s", record.topic, record.partition, record.offset, exc)
            return None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise asyncpg.InterfaceError("the notifier is not connected to Postgres")
        return self._pool

    async def _ready(self) -> bool:
        consumers = (self._consumer, self._webhook_consumer)
        if any(c is None or not c.assigned.is_set() for c in consumers) or self._pool is None:
            return False
        try:
            await sql.ping(self._pool, timeout_s=READY_PING_S)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False
        return True
