"""The `dead_letter` alert: one per job that enters the DLQ, in the transaction that records the failure.

A job enters the DLQ when its row becomes `failed` (exhausted, permanent, unknown job type; a
cancel never does). Only a row the projection actually moved raises it, so a redelivered
`failed` event, which moves nothing, adds no second alert. The alert travels on `alerts`
through the outbox like `batch_completed`, keyed by the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from shared import events
from shared.events import Envelope, EventType
from shared.kafka.producer import OutgoingMessage
from shared.models import JobStatus
from shared.telemetry import inject_headers

KIND = "dead_letter"
SEVERITY = "warning"
# alertId is derived from the job and attempt: a transaction retried after a rollback builds the same alert.
ALERT_NAMESPACE = uuid.UUID("6b1f3c2e-0d7a-4f61-9a3e-5c0de1e77e01")


def alert_id(job_id: uuid.UUID, attempt: int) -> uuid.UUID:
    """The id of the alert a job's failure at `attempt` raises."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{KIND}:{job_id}:{attempt}")


def alert_document(failed: Envelope) -> dict[str, Any]:
    """The alert of DESIGN §5 (`GET /alerts` items) for one `failed` event, plus the job's tenant.

    `tenant` routes it (the notifier keeps an alert naming a tenant within that tenant).
    """
    data = failed.data
    opened = data.get("endedAt") or failed.occurred_at.isoformat()
    return {
        "alertId": str(alert_id(failed.job_id, failed.attempt)),
        "kind": KIND,
        "queue": failed.queue,
        "jobType": failed.job_type,
        "status": "open",
        "severity": SEVERITY,
        "openedAt": opened,
        "resolvedAt": None,
        "details": {
            "jobId": str(failed.job_id),
            "attempts": failed.attempt,
            "error": data.get("error"),
            "reason": data.get("reason"),
        },
        "tenant": failed.tenant,
    }


def alert_message(failed: Envelope) -> OutgoingMessage:
    """The outbox message of one alert: topic `alerts`, keyed by the queue, tenant and trace in headers."""
    # The job's own trace wins over the caller's context, as for its events.
    if failed.trace_parent is not None:
        trace = [(events.TRACE_HEADER, failed.trace_parent.encode())]
    else:
        trace = inject_headers()
    headers = [*trace, (events.TENANT_HEADER, failed.tenant.encode())]
    return OutgoingMessage(events.ALERTS_TOPIC, failed.queue.encode(), orjson.dumps(alert_document(failed)), headers)


def alerts(applied: Sequence[Envelope], moved: Mapping[uuid.UUID, JobStatus]) -> list[OutgoingMessage]:
    """The alerts of the jobs these events moved to `failed` (one per job: the event that failed it)."""
    failing: dict[uuid.UUID, Envelope] = {}
    for e in applied:
        if e.type is EventType.FAILED and moved.get(e.job_id) is JobStatus.FAILED:
            seen = failing.get(e.job_id)
            if seen is None or e.attempt > seen.attempt:
                failing[e.job_id] = e
    return [alert_message(failing[job_id]) for job_id in sorted(failing)]
