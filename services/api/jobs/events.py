"""The events the api writes to the outbox: `submitted` (new and manually retried jobs) and `cancelled`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.api.jobs.job_plan import NewJob
from shared.events import SCHEMA_VERSION, Envelope, EventType, utcnow
from shared.ids import new_id
from shared.telemetry import job_traceparent


def submitted_data(
    *,
    priority: int,
    payload: dict[str, Any],
    max_attempts: int,
    retry: dict[str, Any] | None,
    timeout_ms: int | None,
    run_at: datetime | None,
    depends_on: list[uuid.UUID],
    tags: list[str],
    batch_id: uuid.UUID | None,
    callback_url: str | None,
) -> dict[str, Any]:
    """The `data` of a `submitted` event (the contract every consumer reads)."""
    return {
        "priority": priority,
        "payload": payload,
        "maxAttempts": max_attempts,
        "retry": retry,
        "timeoutMs": timeout_ms,
        "runAt": run_at.isoformat() if run_at else None,
        "dependsOn": [str(d) for d in depends_on],
        "tags": tags,
        "batchId": str(batch_id) if batch_id else None,
        "callbackUrl": callback_url,
    }


def submitted_event(
    job: NewJob, tenant: str, batch_id: uuid.UUID | None = None, trace_parent: str | None = None
) -> Envelope:
    """The `submitted` envelope (attempt 0) of a new job; it starts the job's trace unless one is given."""
    # model_construct: every value is already validated and typed, and batches build thousands of these.
    return Envelope.model_construct(
        event_id=new_id(),
        type=EventType.SUBMITTED,
        schema_version=SCHEMA_VERSION,
        occurred_at=utcnow(),
        job_id=job.id,
        queue=job.queue,
        job_type=job.job_type,
        attempt=0,
        tenant=tenant,
        trace_parent=trace_parent or job_traceparent(),
        data=submitted_data(
            priority=job.priority,
            payload=job.payload,
            max_attempts=job.max_attempts,
            retry=None if job.retry is None else job.retry.model_dump(by_alias=True),
            timeout_ms=job.timeout_ms,
            run_at=job.scheduled_for,
            depends_on=job.depends_on,
            tags=job.tags,
            batch_id=batch_id,
            callback_url=job.callback_url,
        ),
    )


def cancelled_event(
    job_id: uuid.UUID, tenant: str, *, queue: str, job_type: str, attempt: int, trace_parent: str | None
) -> Envelope:
    """The `cancelled` envelope of a job its user cancelled while it waited (at its current attempt)."""
    return Envelope(
        type=EventType.CANCELLED, job_id=job_id, queue=queue, job_type=job_type, attempt=attempt, tenant=tenant,
        trace_parent=trace_parent, data={"reason": "cancelled_by_user", "by": "api"},
    )
