"""An alert as JSON (DESIGN §5 `GET /alerts` items) and as the message that carries it on `alerts`."""

from __future__ import annotations

from typing import Any

import orjson

from services.analytics.alerts.store import Alert
from shared import events
from shared.kafka.producer import OutgoingMessage
from shared.telemetry import inject_headers


def alert_document(alert: Alert) -> dict[str, Any]:
    """The alert's JSON; `tenant` when it has one (as the scheduler's dead_letter alerts), and for a
    queue-level alert `tenants`, the tenants with jobs in the queue, so the notifier can keep it to them."""
    doc: dict[str, Any] = {
        "alertId": str(alert.alert_id),
        "kind": alert.kind,
        "queue": alert.queue,
        "jobType": alert.job_type,
        "status": alert.status,
        "severity": alert.severity,
        "openedAt": alert.opened_at.isoformat(),
        "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "details": alert.details,
    }
    if alert.tenant is not None:
        doc["tenant"] = alert.tenant
    else:
        doc["tenants"] = list(alert.tenants)
    return doc


def alert_message(alert: Alert) -> OutgoingMessage:
    """Topic `alerts`, keyed by the queue (a rule over every queue: by its condition), tenant in a header."""
    headers = inject_headers()
    if alert.tenant is not None:
        headers = [*headers, (events.TENANT_HEADER, alert.tenant.encode())]
    key = alert.queue or alert.condition_key or str(alert.alert_id)
    return OutgoingMessage(events.ALERTS_TOPIC, key.encode(), orjson.dumps(alert_document(alert)), headers)
