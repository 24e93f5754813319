"""Terminal job events and `batch_completed` become webhook deliveries of their callbackUrl, and a rule's
alerts (on `alerts`, opened and resolved) deliveries of the rule's webhookUrl (DESIGN §5).

Its own consumer group (not the fan-out's group-less consumer): offsets are committed only after
the deliveries are stored, so an event that arrives while every notifier is down is delivered
once one is back, and the fan-out never waits on Postgres. Redelivered events and several replicas
are harmless: deliveries are unique per (event id, url). An alert's event id is derived from its
alertId and status, so its opening and its resolving are one delivery each. Its URL is the one the
analytics service stored with the alert (alerts.webhook_url, written before the alert was published).
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
TOPICS: tuple[str, ...] = (*(events.TOPIC_OF[t] for t in TERMINAL), events.BATCHES_TOPIC, events.ALERTS_TOPIC)
GROUP = "notifier-webhooks"
ALERT_EVENT = "alert"
# An alert's delivery event id: uuid5 of its alertId and status (open, resolved).
ALERT_EVENT_NAMESPACE = uuid.UUID("0e3f9a52-7c1d-4b8e-a6f0-2d4c8b1e9a73")


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
    alert_id: uuid.UUID | None = None


class WebhookIntake:
    """The consumer handler: stores a delivery per (event, callbackUrl), then wakes the sender."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], policy: UrlPolicy, topic_prefix: str,
                 wake: Callable[[], None]) -> None:
        self._pool = pool
        self._policy = policy
        self._batches_topic = events.topic_name(topic_prefix, events.BATCHES_TOPIC)
        self._alerts_topic = events.topic_name(topic_prefix, events.ALERTS_TOPIC)
        self._wake = wake

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Store the deliveries of a batch of records (idempotent; junk is logged and skipped)."""
        parsed = [e for e in map(self._event_of, records) if e is not None]
        if not parsed:
            return
        pool = self._pool()
        jobs = await store.callbacks(pool, store.JOB_CALLBACKS, [e.job_id for e in parsed if e.job_id])
        batches = await store.callbacks(pool, store.BATCH_CALLBACKS, [e.batch_id for e in parsed if e.batch_id])
        alerts = await store.callbacks(pool, store.ALERT_CALLBACKS, [e.alert_id for e in parsed if e.alert_id])
        deliveries = []
        for event in parsed:
            callback = jobs.get(event.job_id) if event.job_id else None
            if event.batch_id:
                callback = batches.get(event.batch_id)
            if event.alert_id:
                callback = alerts.get(event.alert_id)
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
            if record.topic == self._alerts_topic:
                return _alert_event(orjson.loads(record.value), record.value)
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


def _alert_event(doc: Any, raw: bytes) -> _Event | None:
    """An alert as published (sent as it came); only a rule's alerts can have a webhook, the lookup tells."""
    if not isinstance(doc, dict) or doc.get("kind") != "rule" or doc.get("status") not in ("open", "resolved"):
        return None
    alert_id = uuid.UUID(doc["alertId"])
    event_id = uuid.uuid5(ALERT_EVENT_NAMESPACE, f"{alert_id}:{doc['status']}")
    return _Event(ALERT_EVENT, event_id, None, None, raw.decode(), alert_id=alert_id)
