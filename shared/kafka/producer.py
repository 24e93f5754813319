"""A batched event producer that survives broker outages (it reconnects on the next publish)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import events
from shared.errors import EventPublishError
from shared.settings import CommonSettings
from shared.telemetry import Headers, inject_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for the wire; `topic` is logical (the producer adds the prefix)."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers = field(default_factory=list)


def message_for(envelope: events.Envelope, trace: Headers | None = None) -> OutgoingMessage:
    """Key by job id so one job's events stay ordered on one partition; `trace` defaults to the
    current context (pass it in when building many messages in one context)."""
    if envelope.trace_parent is not None:  # the job's own trace wins over the caller's context
        trace = [(events.TRACE_HEADER, envelope.trace_parent.encode())]
    headers = [*(inject_headers() if trace is None else trace), (events.TENANT_HEADER, envelope.tenant.encode())]
    return OutgoingMessage(envelope.topic, str(envelope.job_id).encode(), events.encode(envelope), headers)


class EventProducer:
    """Owns one AIOKafkaProducer; `publish` returns only once Kafka acknowledged every message."""

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Try to connect now; a broker that is down is not an error until something is sent."""
        try:
            await self._ensure()
        except EventPublishError as exc:
            log.warning("kafka not reachable at start, will retry on publish: %s", exc)

    async def stop(self) -> None:
        """Flush and close; safe to call twice or before start."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=10)
            except (TimeoutError, KafkaError) as exc:
                log.warning("kafka producer did not stop cleanly: %s", exc)

    @property
    def connected(self) -> bool:
        """Whether a producer is currently started."""
        return self._producer is not None

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            s = self._settings
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap_servers,
                client_id=self._client_id,
                acks="all",
                linger_ms=s.kafka_linger_ms,
                max_batch_size=256 * 1024,
                max_request_size=2 * 1024 * 1024,
                request_timeout_ms=s.kafka_request_timeout_ms,
                enable_idempotence=s.kafka_enable_idempotence,
            )
            try:
                await asyncio.wait_for(producer.start(), timeout=s.kafka_request_timeout_ms / 1000)
            except (TimeoutError, KafkaError, OSError) as exc:
                await _quiet_stop(producer)
                raise EventPublishError(f"cannot connect to Kafka: {exc!r}") from exc
            self._producer = producer
            return producer

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message and wait for all acks; raises EventPublishError on any failure."""
        if not messages:
            return
        producer = await self._ensure()
        prefix = self._settings.kafka_topic_prefix
        timeout = self._settings.kafka_request_timeout_ms / 1000 + 1
        try:
            futures = [
                await producer.send(
                    events.topic_name(prefix, m.topic), m.value, key=m.key, headers=m.headers
                )
                for m in messages
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            # aiokafka may surface a non-retriable UnknownError right after a broker restart;
            # the callers retry the whole batch, and consumers dedupe by eventId.
            raise EventPublishError(f"kafka did not acknowledge {len(messages)} events: {exc!r}") from exc

    async def publish_events(self, envelopes: Sequence[events.Envelope]) -> None:
        """Publish envelopes to their topics."""
        trace = inject_headers()
        await self.publish([message_for(e, trace) for e in envelopes])


async def _quiet_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=5)
    except Exception as exc:
        log.debug("ignoring error stopping a failed producer: %r", exc)
