"""The envelopes a worker emits, with the `data` contracts of the common brief."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.events import Envelope, EventType
from shared.models import ErrorInfo, JobSpec


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def envelope(spec: JobSpec, kind: EventType, data: dict[str, Any]) -> Envelope:
    """An event of this attempt, carrying the job's tenant."""
    return Envelope(
        type=kind, job_id=spec.job_id, queue=spec.queue, job_type=spec.job_type,
        attempt=spec.attempt, data=data, tenant=spec.tenant, trace_parent=spec.trace_parent,
    )


def started(spec: JobSpec, worker_id: str, started_at: datetime) -> Envelope:
    """The attempt began on this worker."""
    return envelope(spec, EventType.STARTED, {"workerId": worker_id, "startedAt": _iso(started_at)})


def progress(spec: JobSpec, worker_id: str, percent: float, message: str | None) -> Envelope:
    """The handler reported progress."""
    report: dict[str, Any] = {"percent": percent}
    if message is not None:
        report["message"] = message
    return envelope(spec, EventType.PROGRESS, {"progress": report, "workerId": worker_id})


def completed(spec: JobSpec, worker_id: str, result: Any, started_at: datetime, ended_at: datetime) -> Envelope:
    """The attempt succeeded."""
    duration_ms = max(0, int((ended_at - started_at) / timedelta(milliseconds=1)))
    return envelope(spec, EventType.COMPLETED, {
        "result": result, "workerId": worker_id, "startedAt": _iso(started_at),
        "endedAt": _iso(ended_at), "durationMs": duration_ms,
    })


def retry(
    spec: JobSpec, worker_id: str, error: ErrorInfo, delay_ms: int, started_at: datetime, ended_at: datetime
) -> Envelope:
    """The attempt failed and the next one runs `delay_ms` after `ended_at`."""
    next_run = ended_at + timedelta(milliseconds=delay_ms)
    return envelope(spec, EventType.RETRY, {
        "error": error.model_dump(), "nextRunAt": _iso(next_run), "delayMs": delay_ms,
        "workerId": worker_id, "startedAt": _iso(started_at), "endedAt": _iso(ended_at),
    })


def failed(
    spec: JobSpec, worker_id: str, error: ErrorInfo, reason: str, started_at: datetime, ended_at: datetime
) -> Envelope:
    """The job failed for good (dead-letter)."""
    return envelope(spec, EventType.FAILED, {
        "error": error.model_dump(), "workerId": worker_id, "startedAt": _iso(started_at),
        "endedAt": _iso(ended_at), "reason": reason,
    })


def cancelled(spec: JobSpec) -> Envelope:
    """The worker stopped the handler because the job was cancelled."""
    return envelope(spec, EventType.CANCELLED, {"reason": "cancelled_by_user", "by": "worker"})
