"""Everything alerts need in the analytics service, as one owned task: started by ONE spawn in service.py.

Inside: a Kafka producer and the outbox relay that publishes alerts, the detector's loop (every
`alert_eval_interval_s`), and the consumer that stores alerts read from `alerts` (dead_letter ones).
`run(stopping)` returns once `stopping` is set and everything inside has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import asyncpg

from services.analytics.alerts.detector import Detector
from services.analytics.alerts.intake import GROUP, AlertIntake
from shared import events
from shared.errors import EventPublishError
from shared.kafka.consumer import ConsumerLoop
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.settings import AnalyticsSettings

log = logging.getLogger(__name__)

# A tick that fails for these waits for the next one (Postgres restarting, a slow statement).
TRANSIENT: tuple[type[Exception], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, EventPublishError,
)
FLUSH_S = 5.0


class AlertsRuntime:
    """The detector loop, the alert publisher and the alert intake, owned together."""

    def __init__(self, pool: asyncpg.Pool, settings: AnalyticsSettings) -> None:
        self._pool = pool
        self._s = settings
        self.detector: Detector | None = None
        self.consumer: ConsumerLoop | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Run until `stopping` is set; then stop the consumer, publish what is held and close the producer."""
        s = self._s
        producer = EventProducer(s, client_id=f"analytics-alerts-{socket.gethostname()}-{os.getpid()}")
        await producer.start()
        relay = OutboxRelay(self._pool, producer, sweep_after_s=s.outbox_sweep_after_s)
        self.detector = Detector(self._pool, s, relay.hand_off)
        self.consumer = consumer = ConsumerLoop(
            s, topics=(events.ALERTS_TOPIC,), group_id=f"{s.kafka_topic_prefix}{GROUP}",
            handler=AlertIntake(self._pool, s.db_command_timeout_s).handle,
            client_id=f"analytics-alerts-{socket.gethostname()}-{os.getpid()}", auto_offset_reset="earliest",
        )
        try:
            async with asyncio.TaskGroup() as group:
                relay_task = group.create_task(relay.run(), name="alerts-outbox-relay")
                group.create_task(consumer.run(), name="alerts-intake")
                await self._evaluate(stopping)
                consumer.stop()
                relay_task.cancel()
        finally:
            await relay.flush(timeout_s=FLUSH_S)
            await producer.stop()

    async def _evaluate(self, stopping: asyncio.Event) -> None:
        assert self.detector is not None
        failures = 0
        while not stopping.is_set():
            try:
                await self.detector.tick()
                failures = 0
            except TRANSIENT as exc:
                failures += 1
                # Loud once, then quiet while the outage lasts.
                level = logging.WARNING if failures == 1 or failures % 50 == 0 else logging.DEBUG
                log.log(level, "alert evaluation failed (%d in a row): %r", failures, exc)
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self._s.alert_eval_interval_s)
            except TimeoutError:
                pass
