"""When an attempt became due (`JobSpec.due_at_ms`, the start of the worker's `waitMs`), from the row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.scheduler.rows import JobRow, became_due_ms, spec_for, to_ms
from shared.events import utcnow
from shared.models import JobStatus

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def row(status: JobStatus, *, scheduled_for: datetime | None = None, next_run_at: datetime | None = None) -> JobRow:
    return JobRow(
        id=uuid.uuid4(), tenant="acme", queue="q", job_type="noop", status=status, priority=5, payload={},
        max_attempts=3, retry=None, timeout_ms=None, scheduled_for=scheduled_for, depends_on=(), attempts=0,
        state_attempt=0, state_rank=0, created_at=NOW - 60 * S, updated_at=NOW - 10 * S, next_run_at=next_run_at,
    )


def test_a_retry_is_due_at_its_next_run_and_a_scheduled_job_at_its_time() -> None:
    assert became_due_ms(row(JobStatus.RETRYING, next_run_at=NOW + 5 * S)) == to_ms(NOW + 5 * S)
    assert became_due_ms(row(JobStatus.SCHEDULED, scheduled_for=NOW + 30 * S)) == to_ms(NOW + 30 * S)
    assert became_due_ms(row(JobStatus.PENDING, scheduled_for=NOW + 30 * S)) == to_ms(NOW + 30 * S)


def test_otherwise_when_the_row_last_moved_or_now_for_a_released_dependent() -> None:
    # A pending row (submitted, or reset by a manual retry), a queued row re-pushed by reconciliation.
    assert became_due_ms(row(JobStatus.PENDING)) == to_ms(NOW - 10 * S)
    assert became_due_ms(row(JobStatus.PENDING, scheduled_for=NOW - 3600 * S)) == to_ms(NOW - 10 * S)
    assert became_due_ms(row(JobStatus.QUEUED)) == to_ms(NOW - 10 * S)
    before = to_ms(utcnow())
    assert before <= became_due_ms(row(JobStatus.BLOCKED)) <= to_ms(utcnow())


def test_the_spec_carries_it() -> None:
    assert spec_for(row(JobStatus.RETRYING, next_run_at=NOW), 2).due_at_ms == to_ms(NOW)
