"""Job rows as the scheduler reads them, and what it derives from them: dispatch specs and events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared import events
from shared.logs import job_fields
from shared.models import JobSpec, JobStatus, RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobRow:
    """The columns of one `jobs` row that dispatch decisions read."""

    id: uuid.UUID
    tenant: str
    queue: str
    job_type: str
    status: JobStatus
    priority: int
    payload: Any
    max_attempts: int
    retry: Any
    timeout_ms: int | None
    scheduled_for: datetime | None
    depends_on: tuple[uuid.UUID, ...]
    attempts: int
    state_attempt: int
    state_rank: int
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None = None
    started_at: datetime | None = None
    trace_parent: str | None = None
    cancel_requested: bool = False
    rate_limit_key: str | None = None
    concurrency_key: str | None = None
    fairness_key: str | None = None
    checkpoint: Any = None  # the handler's last checkpoint (migration 0007)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> JobRow:
        """Build from an asyncpg record selected with `store.jobs.COLUMNS`."""
        return cls(
            id=r["id"], tenant=r["tenant"], queue=r["queue"], job_type=r["job_type"],
            status=JobStatus(r["status"]), priority=r["priority"], payload=r["payload"],
            max_attempts=r["max_attempts"], retry=r["retry"], timeout_ms=r["timeout_ms"],
            scheduled_for=r["scheduled_for"], depends_on=tuple(r["depends_on"] or ()),
            attempts=r["attempts"], state_attempt=r["state_attempt"], state_rank=r["state_rank"],
            created_at=r["created_at"], updated_at=r["updated_at"], next_run_at=r["next_run_at"],
            started_at=r["started_at"], trace_parent=r.get("trace_parent"),
            cancel_requested=bool(r.get("cancel_requested")), checkpoint=r.get("checkpoint"),
            rate_limit_key=r.get("rate_limit_key"), concurrency_key=r.get("concurrency_key"),
            fairness_key=r.get("fairness_key"),
        )

    @property
    def next_attempt(self) -> int:
        """The number the next dispatched attempt gets: above every attempt the row recorded."""
        return max(self.attempts, self.state_attempt) + 1


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (Redis run-at scores)."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def due_at(row: JobRow, at_ms: int) -> int:
    """When the next attempt of a waiting row is due: it goes through the delayed set and the
    promoter, which records the attempt as queued with its `dispatched` event (never 0: ready)."""
    if row.status is JobStatus.SCHEDULED and row.scheduled_for is not None:
        return max(to_ms(row.scheduled_for), 1)
    if row.status is JobStatus.RETRYING and row.next_run_at is not None:
        return max(to_ms(row.next_run_at), at_ms)
    return at_ms


def parse_time(value: Any) -> datetime | None:
    """A timestamp from event data: ISO text (or epoch ms); None when absent or junk."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return from_ms(int(value))
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            log.warning("ignoring unparsable timestamp %r", value)
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _retry_policy(raw: Any, job_id: uuid.UUID) -> RetryPolicy | None:
    if raw is None:
        return None  # the job gave none: the worker resolves the default
    try:
        return RetryPolicy.model_validate(raw)
    except ValidationError as exc:
        # A bad stored policy must not poison the whole batch: fall back to the default.
        log.warning("invalid stored retry policy, using the default: %s", exc, extra=job_fields(job_id))
        return RetryPolicy()


def became_due_ms(row: JobRow) -> int:
    """When the attempt a spec is built for became due (epoch ms), for the worker's `waitMs`: a retry's
    next run time, a scheduled time, else when the row last moved (its creation, a manual retry, its
    queueing); a row released from its dependencies just now."""
    if row.status is JobStatus.RETRYING and row.next_run_at is not None:
        return to_ms(row.next_run_at)
    if row.status is JobStatus.BLOCKED:
        return to_ms(events.utcnow())
    if row.status in (JobStatus.PENDING, JobStatus.SCHEDULED) and row.scheduled_for is not None:
        return to_ms(max(row.scheduled_for, row.updated_at))
    return to_ms(row.updated_at)


def spec_for(row: JobRow, attempt: int) -> JobSpec:
    """The Redis dispatch spec of one attempt of this row (never raises on odd stored data)."""
    payload = row.payload if isinstance(row.payload, dict) else {"value": row.payload}
    return JobSpec(
        job_id=row.id, tenant=row.tenant, queue=row.queue, job_type=row.job_type, payload=payload,
        priority=row.priority, attempt=attempt, max_attempts=row.max_attempts,
        retry=_retry_policy(row.retry, row.id), timeout_ms=row.timeout_ms,
        submitted_at_ms=to_ms(row.created_at), due_at_ms=became_due_ms(row), trace_parent=row.trace_parent,
        rate_limit_key=row.rate_limit_key, concurrency_key=row.concurrency_key, fairness_key=row.fairness_key,
        checkpoint_state=row.checkpoint,
    )


def event(
    kind: events.EventType,
    *,
    job_id: uuid.UUID,
    tenant: str,
    queue: str,
    job_type: str,
    attempt: int,
    data: dict[str, Any],
    trace_parent: str | None = None,
) -> events.Envelope:
    """An envelope the scheduler emits; its tenant is always the job's, and so is its trace."""
    return events.Envelope(
        type=kind, job_id=job_id, tenant=tenant, queue=queue, job_type=job_type, attempt=attempt, data=data,
        trace_parent=trace_parent,
    )


def dispatched_event(row: JobRow, attempt: int) -> events.Envelope:
    """`dispatched` for an attempt about to enter its queue's ready set."""
    return event(
        events.EventType.DISPATCHED, job_id=row.id, tenant=row.tenant, queue=row.queue,
        job_type=row.job_type, attempt=attempt, data={"priority": row.priority}, trace_parent=row.trace_parent,
    )


def cancelled_event(row: JobRow, attempt: int, reason: str) -> events.Envelope:
    """`cancelled` the scheduler decides: a dependency ended failed or cancelled, or a cancel
    requested while the job ran found no worker left to stop it."""
    return event(
        events.EventType.CANCELLED, job_id=row.id, tenant=row.tenant, queue=row.queue,
        job_type=row.job_type, attempt=attempt, data={"reason": reason, "by": "scheduler"},
        trace_parent=row.trace_parent,
    )
