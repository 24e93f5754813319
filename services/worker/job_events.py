"""The envelopes a worker emits, with the `data` contracts of the common brief."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.worker.context import UNSET, Report, Unset
from shared.events import Envelope, EventType
from shared.models import ErrorInfo, JobSpec


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _with_checkpoint(data: dict[str, Any], checkpoint: Any) -> dict[str, Any]:
    # Outcome events carry the attempt's last checkpoint: Kafka does not order the progress topic
    # before them, and a terminal row accepts no later progress.
    if not isinstance(checkpoint, Unset):
        data["checkpoint"] = checkpoint
    return data


def envelope(spec: JobSpec, kind: EventType, data: dict[str, Any]) -> Envelope:
    """An event of this attempt, carrying the job's tenant."""
    return Envelope(
        type=kind, job_id=spec.job_id, queue=spec.queue, job_type=spec.job_type,
        attempt=spec.attempt, data=data, tenant=spec.tenant, trace_parent=spec.trace_parent,
    )


def wait_ms(spec: JobSpec, started_at: datetime, popped_ms: int = 0) -> int | None:
    """How long the attempt waited to start: from when it became due (`spec.due_at_ms`) to the Redis
    time of the pop that leased it (`popped_ms`; this worker's clock at the start if unknown).

    None when the spec does not say when it became due (a spec pushed before `dueAtMs` existed).
    """
    if spec.due_at_ms <= 0:
        return None
    start_ms = popped_ms if popped_ms > 0 else int(started_at.timestamp() * 1000)
    return max(0, start_ms - spec.due_at_ms)


def started(spec: JobSpec, worker_id: str, started_at: datetime, *, popped_ms: int = 0) -> Envelope:
    """The attempt began on this worker: data `{workerId, startedAt, waitMs?}` (waitMs: see `wait_ms`)."""
    data: dict[str, Any] = {"workerId": worker_id, "startedAt": _iso(started_at)}
    waited = wait_ms(spec, started_at, popped_ms)
    if waited is not None:
        data["waitMs"] = waited
    return envelope(spec, EventType.STARTED, data)


def report(spec: JobSpec, worker_id: str, report: Report) -> Envelope:
    """A `progress` event: any of the handler's progress, new log lines and its latest checkpoint.

    data: `{workerId, progress?: {percent, current?, total?, stage?, message?}, logs?: [{at, attempt,
    message}], droppedLogs?, checkpoint?}`.
    """
    data: dict[str, Any] = {"workerId": worker_id}
    if report.progress is not None:
        data["progress"] = report.progress
    if report.logs:
        data["logs"] = report.logs
    if report.dropped_logs:
        data["droppedLogs"] = report.dropped_logs
    if report.has_checkpoint:
        data["checkpoint"] = report.checkpoint
    return envelope(spec, EventType.PROGRESS, data)


def progress(spec: JobSpec, worker_id: str, percent: float, message: str | None) -> Envelope:
    """The handler reported progress as a percentage."""
    report_: dict[str, Any] = {"percent": percent}
    if message is not None:
        report_["message"] = message
    return envelope(spec, EventType.PROGRESS, {"progress": report_, "workerId": worker_id})


def late_result(
    spec: JobSpec, worker_id: str, outcome: str, at: datetime, error: ErrorInfo | None = None
) -> Envelope:
    """A result this worker will not apply: its lease was gone (expired and taken over) when the attempt ended.

    Sent as a `progress` event with `data.lateResult`, so nothing that acts on outcomes (the
    job row, webhooks, aggregates) sees it; the scheduler records it on the attempt.
    """
    late: dict[str, Any] = {
        "outcome": outcome, "at": _iso(at), "workerId": worker_id, "rejected": True, "reason": "lease_lost",
    }
    if error is not None:
        late["error"] = error.model_dump()
    return envelope(spec, EventType.PROGRESS, {"lateResult": late, "workerId": worker_id})


def completed(
    spec: JobSpec, worker_id: str, result: Any, started_at: datetime, ended_at: datetime, checkpoint: Any = UNSET
) -> Envelope:
    """The attempt succeeded (`checkpoint`: its latest, if it made one: the job shows it)."""
    duration_ms = max(0, int((ended_at - started_at) / timedelta(milliseconds=1)))
    data: dict[str, Any] = {
        "result": result, "workerId": worker_id, "startedAt": _iso(started_at),
        "endedAt": _iso(ended_at), "durationMs": duration_ms,
    }
    return envelope(spec, EventType.COMPLETED, _with_checkpoint(data, checkpoint))


def retry(
    spec: JobSpec, worker_id: str, error: ErrorInfo, delay_ms: int, started_at: datetime, ended_at: datetime,
    checkpoint: Any = UNSET,
) -> Envelope:
    """The attempt failed and the next one runs `delay_ms` after `ended_at`.

    `checkpoint`: the attempt's latest checkpoint, when it made one; the next attempt starts with it
    (carried here too because Kafka orders nothing across the progress and retry topics).
    """
    next_run = ended_at + timedelta(milliseconds=delay_ms)
    data: dict[str, Any] = {
        "error": error.model_dump(), "nextRunAt": _iso(next_run), "delayMs": delay_ms,
        "workerId": worker_id, "startedAt": _iso(started_at), "endedAt": _iso(ended_at),
    }
    return envelope(spec, EventType.RETRY, _with_checkpoint(data, checkpoint))


def failed(
    spec: JobSpec, worker_id: str, error: ErrorInfo, reason: str, started_at: datetime, ended_at: datetime,
    checkpoint: Any = UNSET,
) -> Envelope:
    """The job failed for good (dead-letter); `checkpoint` as for `completed`."""
    data: dict[str, Any] = {
        "error": error.model_dump(), "workerId": worker_id, "startedAt": _iso(started_at),
        "endedAt": _iso(ended_at), "reason": reason,
    }
    return envelope(spec, EventType.FAILED, _with_checkpoint(data, checkpoint))


def cancelled(spec: JobSpec) -> Envelope:
    """The worker stopped the handler because the job was cancelled."""
    return envelope(spec, EventType.CANCELLED, {"reason": "cancelled_by_user", "by": "worker"})
