"""Alerts read back from `alerts` into the alerts table, so GET /alerts lists the scheduler's dead_letter alerts.

Its own consumer group (`analytics-alerts`), committed after the rows are stored; idempotent by
alertId (redeliveries, and this service's own alerts coming back, change nothing).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from services.analytics.alerts import store
from services.analytics.alerts.store import Alert
from shared import events

log = logging.getLogger(__name__)

GROUP = "analytics-alerts"
KINDS = {"failure_rate", "duration", "backlog", "rule", "dead_letter"}


def alert_of(record: ConsumerRecord) -> Alert | None:
    """The alert a record carries; None (logged) for anything else."""
    try:
        doc: Any = orjson.loads(record.value)
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS or doc.get("status") not in ("open", "resolved"):
            raise ValueError("not an alert")
        headers = {k: v for k, v in (record.headers or ())}
        tenant = doc.get("tenant") or (headers[events.TENANT_HEADER].decode()
                                       if events.TENANT_HEADER in headers else None)
        resolved = doc.get("resolvedAt")
        details = doc.get("details")
        return Alert(
            alert_id=uuid.UUID(doc["alertId"]), tenant=tenant, kind=doc["kind"], queue=doc.get("queue"),
            job_type=doc.get("jobType"), rule_id=None, condition_key=None, status=doc["status"],
            severity=str(doc.get("severity") or "warning"), opened_at=datetime.fromisoformat(doc["openedAt"]),
            resolved_at=datetime.fromisoformat(resolved) if resolved else None,
            details=details if isinstance(details, dict) else {},
            tenants=[t for t in doc.get("tenants") or [] if isinstance(t, str)],
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.error("alerts intake: skipping record %s:%s@%s: %r", record.topic, record.partition, record.offset, exc)
        return None


class AlertIntake:
    """The consumer handler: stores what it reads, then lets the offsets be committed."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Store a batch of alerts (junk is logged and skipped)."""
        alerts = [a for a in map(alert_of, records) if a is not None]
        await store.store_consumed(self._pool, alerts, self._timeout_s)
