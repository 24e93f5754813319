"""Terminal job events and `batch_completed` become webhook deliveries of their callbackUrl (DESIGN §5).

Its own consumer group (not the fan-out's group-less consumer): offsets are committed only after
the deliveries are stored, so an event that arrives while every notifier is down is delivered
once one is back, and the fan-out never waits on Postgres. Redelivered events and several replicas
are harmless: deliveries are unique per (event id, url).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from services.notifier.store import webhooks as store
from shared import events, jsonutil
from shared.events import EventType

log = logging.getLogger(__name__)

TERMINAL = (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED)
TOPICS: tuple[str, ...] = (*(events.TOPIC_OF[t] for t in TERMINAL), events.BATCHES_TOPIC)
GROUP = "notifier-webhooks"


class UrlPolicy:
    """Any http(s) URL, loopback included, unless an allow-list restricts the hosts (`*.x.com`: subdomains)."""

    def __init__(self, allowed_hosts: str) -> None:
        self._hosts = {h.strip().lower().rstrip(".") for h in allowed_hosts.split(",") if h.strip()}

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be called, or None."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return "refused: not a valid URL"
        if parts.scheme not in ("http", "https") or not host:
            return "refused: only http and https URLs with a host are called"
        if self._hosts and not any(_matches(host, allowed) for allowed in self._hosts):
            return f"refused: host {host!r} is not in WEBHOOK_ALLOWED_HOSTS"
        return None


def _matches(host: str, allowed: str) -> bool:
    if allowed.startswith("*."):
        return host.endswith(allowed[1:])
    return host == allowed


@dataclass(frozen=True, slots=True)
class _Event:
    """What a delivery needs of one consumed event."""

    type: str
    event_id: uuid.UUID
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    body: str


class WebhookIntake:
    """The consumer handler: stores a delivery per (event, callbackUrl), then wakes the sender."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], policy: UrlPolicy, topic_prefix: str,
                 wake: Callable[[], None]) -> None:
        self._pool = pool
        self._policy = policy
        self._batches_topic = events.topic_name(topic_prefix, events.BATCHES_TOPIC)
        self._wake = wake

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Store the deliveries of a batch of records (idempotent; junk is logged and skipped)."""
        parsed = [e for e in map(self._event_of, records) if e is not None]
        if not parsed:
            return
        pool = self._pool()
        jobs = await store.callbacks(pool, store.JOB_CALLBACKS, [e.job_id for e in parsed if e.job_id])
        batches = await store.callbacks(pool, store.BATCH_CALLBACKS, [e.batch_id for e in parsed if e.batch_id])
        deliveries = []
        for event in parsed:
            callback = jobs.get(event.job_id) if event.job_id else None
            if event.batch_id:
                callback = batches.get(event.batch_id)
            if callback is not None:
                deliveries.append(self._delivery(event, callback))
        if deliveries:
            await store.enqueue(pool, deliveries)
            self._wake()

    def _delivery(self, event: _Event, callback: store.Callback) -> store.NewDelivery:
        refusal = self._policy.refusal(callback.url)
        refused = None
        if refusal is not None:
            log.warning("webhook %s of event %s not sent: %s", callback.url, event.event_id, refusal)
            refused = {"at": datetime.now(UTC).isoformat(), "status": None, "error": refusal, "durationMs": 0}
        return store.NewDelivery(
            tenant=callback.tenant, job_id=event.job_id, batch_id=event.batch_id, event_type=event.type,
            event_id=event.event_id, url=callback.url, body=event.body, refused=refused,
        )

    def _event_of(self, record: ConsumerRecord) -> _Event | None:
        try:
            if record.topic == self._batches_topic:
                return _batch_event(orjson.loads(record.value))
            envelope = events.decode(record.value)
            return _Event(envelope.type.value, envelope.event_id, envelope.job_id, None,
                          jsonutil.dumps_str(envelope.to_wire()))
        except (ValueError, TypeError, KeyError) as exc:  # orjson and pydantic errors are ValueErrors
            log.error("webhooks: skipping undecodable record %s:%s@%s: %s",
                      record.topic, record.partition, record.offset, exc)
            return None


def _batch_event(doc: Any) -> _Event | None:
    """A `batch_completed` envelope as published (jobId etc. null, data.batchId), sent as it came."""
    if not isinstance(doc, dict) or doc.get("type") != events.BATCH_COMPLETED:
        return None
    return _Event(events.BATCH_COMPLETED, uuid.UUID(doc["eventId"]), None, uuid.UUID(doc["data"]["batchId"]),
                  jsonutil.dumps_str(doc))
