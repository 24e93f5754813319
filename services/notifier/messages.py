"""Server → client messages: what each consumed record becomes, and who it is for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared import events, jsonutil, worker_events
from shared.events import Envelope, EventType
from shared.models import JobStatus


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outgoing message, serialized once and shared by every recipient.

    Recipients are the subscribers of `job_id` (directly or through its batch), of `queue`, of
    `batch_id` and of everything, within `tenant` (None: every tenant). A message kind is just
    a Delivery with the routing fields it needs (an alert has none: `all` subscribers only).
    """

    kind: str
    text: str
    tenant: str | None
    job_id: str | None = None
    queue: str | None = None
    # Messages with the same key replace each other while still queued (latest wins).
    coalesce_key: str | None = None
    # About a cluster resource (workers): only for clients whose key holds the `cluster` scope (DESIGN §10).
    cluster_only: bool = False
    # The event it reports (the ring and resume key on it; None: not an event, e.g. queue_stats).
    event_id: str | None = None
    batch_id: str | None = None
    # When the event happened (epoch seconds): the audit log's order, used when resuming from it.
    occurred_at: float = 0.0
    # A queue-level alert naming no tenant (DESIGN §10): only the tenants with jobs in that queue,
    # and `cluster` holders; None: no such restriction.
    audience: frozenset[str] | None = None
    # A job event's type and (completed) duration: what queue_stats counts.
    event_type: EventType | None = None
    duration_ms: float | None = None


# Event type -> (message type, job status after the event).
JOB_MESSAGE: dict[EventType, tuple[str, JobStatus]] = {
    EventType.SUBMITTED: ("job_update", JobStatus.PENDING),
    EventType.DISPATCHED: ("job_update", JobStatus.QUEUED),
    EventType.STARTED: ("job_update", JobStatus.RUNNING),
    EventType.PROGRESS: ("job_progress", JobStatus.RUNNING),
    EventType.COMPLETED: ("job_completed", JobStatus.COMPLETED),
    EventType.RETRY: ("job_retry", JobStatus.RETRYING),
    EventType.FAILED: ("job_failed", JobStatus.FAILED),
    EventType.CANCELLED: ("job_update", JobStatus.CANCELLED),
}


def encode(message: dict[str, Any]) -> str:
    """Compact JSON text of a message."""
    return jsonutil.dumps_str(message)


def job_message(envelope: Envelope) -> dict[str, Any]:
    """`{type, jobId, queue, jobType, status, attempt, eventId, occurredAt, data}` for a job event."""
    kind, status = JOB_MESSAGE[envelope.type]
    return {
        "type": kind,
        "jobId": str(envelope.job_id),
        "queue": envelope.queue,
        "jobType": envelope.job_type,
        "status": status.value,
        "attempt": envelope.attempt,
        "eventId": str(envelope.event_id),
        "occurredAt": envelope.occurred_at.isoformat(),
        "data": envelope.data,
    }


def job_delivery(envelope: Envelope) -> Delivery:
    """Route a job event to its job's, its queue's and the all-subscribers of its tenant."""
    message = job_message(envelope)
    job_id = message["jobId"]
    return Delivery(
        kind=message["type"],
        text=encode(message),
        tenant=envelope.tenant,
        job_id=job_id,
        queue=envelope.queue,
        coalesce_key=f"progress:{job_id}" if envelope.type is EventType.PROGRESS else None,
        event_id=message["eventId"],
        occurred_at=envelope.occurred_at.timestamp(),
        event_type=envelope.type,
        duration_ms=_duration_ms(envelope),
    )


def _duration_ms(envelope: Envelope) -> float | None:
    if envelope.type is not EventType.COMPLETED:
        return None
    duration = envelope.data.get("durationMs")
    return float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None


# Alerts from before they carried an eventId get one derived from what they are (stable across
# replicas and redeliveries, so the ring deduplicates them and `since` finds them on every replica).
_ALERT_EVENTS = uuid.UUID("3f0b7c52-8d7e-4a8e-9a53-4e0c1f2d9b61")


def alert_event_id(alert: Any, position: str) -> str:
    """The alert document's own `eventId`, else one derived from alertId+status, else from the record position."""
    if isinstance(alert, dict):
        own = alert.get("eventId")
        if isinstance(own, str) and own:
            return own
        if isinstance(alert.get("alertId"), str):
            return str(uuid.uuid5(_ALERT_EVENTS, f"{alert['alertId']}:{alert.get('status')}"))
    return str(uuid.uuid5(_ALERT_EVENTS, position))


def alert_delivery(alert: Any, *, event_id: str, occurred_at: float) -> Delivery:
    """`{"type": "alert", "eventId", "alert": ...}` to every all-subscriber; an alert naming a tenant stays in it."""
    tenant = alert.get("tenant") if isinstance(alert, dict) else None
    return Delivery(
        kind="alert",
        text=encode({"type": "alert", "eventId": event_id, "alert": alert}),
        tenant=tenant if isinstance(tenant, str) else None,
        event_id=event_id,
        occurred_at=occurred_at,
    )


def batch_delivery(doc: Any, tenant: str) -> Delivery | None:
    """`batch_completed` `{type, batchId, eventId, occurredAt, data}`: to the batch's and all-subscribers."""
    if not isinstance(doc, dict) or doc.get("type") != events.BATCH_COMPLETED:
        return None
    data = doc.get("data")
    event_id = doc.get("eventId")
    if not isinstance(data, dict) or not isinstance(data.get("batchId"), str) or not isinstance(event_id, str):
        return None
    batch_id = str(uuid.UUID(data["batchId"]))
    message = {"type": events.BATCH_COMPLETED, "batchId": batch_id, "eventId": event_id,
               "occurredAt": doc.get("occurredAt"), "data": data}
    return Delivery(kind=events.BATCH_COMPLETED, text=encode(message), tenant=tenant, batch_id=batch_id,
                    event_id=event_id)


def worker_delivery(event: Any) -> Delivery | None:
    """`worker_started` / `worker_stopped` to the all-subscribers of every tenant holding `cluster`; None for junk.

    `{type, workerId, eventId, occurredAt, data}`: data as the event has it (reason, queues, host ...).
    """
    if not isinstance(event, dict) or event.get("type") not in worker_events.KINDS:
        return None
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("workerId"), str):
        return None
    message = {
        "type": event["type"],
        "workerId": data["workerId"],
        "eventId": event.get("eventId"),
        "occurredAt": event.get("occurredAt"),
        "data": data,
    }
    event_id = message["eventId"] if isinstance(message["eventId"], str) else None
    return Delivery(kind=message["type"], text=encode(message), tenant=None, cluster_only=True, event_id=event_id)
