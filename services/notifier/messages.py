"""Server → client messages: what each consumed record becomes, and who it is for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import jsonutil, worker_events
from shared.events import Envelope, EventType
from shared.models import JobStatus


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outgoing message, serialized once and shared by every recipient.

    Recipients are the subscribers of `job_id`, of `queue` and of everything, within `tenant`
    (None: every tenant). A new message kind (queue_stats, worker_started, ...) is just
    another Delivery with the routing fields it needs.
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
    )


def alert_delivery(alert: Any) -> Delivery:
    """`{"type": "alert", "alert": ...}` to every all-subscriber; an alert naming a tenant stays in it."""
    tenant = alert.get("tenant") if isinstance(alert, dict) else None
    return Delivery(
        kind="alert",
        text=encode({"type": "alert", "alert": alert}),
        tenant=tenant if isinstance(tenant, str) else None,
    )


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
    return Delivery(kind=message["type"], text=encode(message), tenant=None, cluster_only=True)
