"""Where a pending or blocked row goes next (pure decisions, no database)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scheduler.dispatch import Outcome, decide
from services.scheduler.rows import JobRow, due_at, parse_time, spec_for, to_ms
from shared.models import JobStatus, RetryPolicy

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)


def row(**over: Any) -> JobRow:
    base = JobRow(
        id=uuid.uuid4(), tenant="acme", queue="q", job_type="noop", status=JobStatus.PENDING, priority=7,
        payload={"x": 1}, max_attempts=3, retry={"strategy": "fixed", "baseDelayMs": 10}, timeout_ms=1000,
        scheduled_for=None, depends_on=(), attempts=0, state_attempt=0, state_rank=0,
        created_at=NOW - timedelta(seconds=5), updated_at=NOW,
    )
    return replace(base, **over)


def test_a_plain_pending_row_is_queued_as_attempt_one() -> None:
    d = decide(row(), {}, NOW_MS)
    assert d is not None
    assert (d.outcome, d.attempt, d.run_at_ms) == (Outcome.QUEUED, 1, 0)
    assert d.state == (1, 1)  # dispatched rank: older events about the row are now stale


def test_attempt_numbers_keep_rising_after_a_manual_retry() -> None:
    # The API resets a failed row to pending but keeps attempts and state_attempt.
    d = decide(row(attempts=3, state_attempt=3), {}, NOW_MS)
    assert d is not None and d.attempt == 4


def test_a_future_run_time_schedules_and_a_past_one_queues() -> None:
    later = decide(row(scheduled_for=NOW + timedelta(seconds=30)), {}, NOW_MS)
    assert later is not None
    assert (later.outcome, later.run_at_ms, later.attempt) == (Outcome.SCHEDULED, NOW_MS + 30_000, 1)
    assert later.state == (0, 0)  # nothing dispatched yet: the promoter records that
    earlier = decide(row(scheduled_for=NOW - timedelta(seconds=30)), {}, NOW_MS)
    assert earlier is not None and earlier.outcome is Outcome.QUEUED


@pytest.mark.parametrize(
    ("dep_states", "expected"),
    [
        (["completed", "completed"], Outcome.QUEUED),
        (["completed", "running"], Outcome.BLOCKED),
        (["pending", "queued"], Outcome.BLOCKED),
        (["completed", "failed"], Outcome.CANCELLED),
        (["running", "cancelled"], Outcome.CANCELLED),
        (["completed", None], Outcome.CANCELLED),  # a dependency that does not exist never completes
    ],
)
def test_dependencies_decide_between_block_release_and_cancel(
    dep_states: list[str | None], expected: Outcome
) -> None:
    deps = (uuid.uuid4(), uuid.uuid4())
    statuses = {dep: s for dep, s in zip(deps, dep_states, strict=True) if s is not None}
    d = decide(row(depends_on=deps), statuses, NOW_MS)
    assert d is not None and d.outcome is expected


def test_a_blocked_row_with_unmet_dependencies_stays_as_it_is() -> None:
    dep = uuid.uuid4()
    assert decide(row(status=JobStatus.BLOCKED, depends_on=(dep,)), {dep: "running"}, NOW_MS) is None
    released = decide(row(status=JobStatus.BLOCKED, depends_on=(dep,)), {dep: "completed"}, NOW_MS)
    assert released is not None and released.outcome is Outcome.QUEUED


def test_a_released_row_still_waits_for_its_run_time() -> None:
    dep = uuid.uuid4()
    r = row(status=JobStatus.BLOCKED, depends_on=(dep,), scheduled_for=NOW + timedelta(minutes=1))
    d = decide(r, {dep: "completed"}, NOW_MS)
    assert d is not None and d.outcome is Outcome.SCHEDULED


def test_a_dependency_cancel_records_the_cancelled_rank() -> None:
    dep = uuid.uuid4()
    d = decide(row(depends_on=(dep,), attempts=0, state_attempt=0), {dep: "failed"}, NOW_MS)
    assert d is not None and d.state == (0, 5)


def test_the_spec_carries_the_row() -> None:
    r = row()
    spec = spec_for(r, 2)
    assert (spec.job_id, spec.tenant, spec.queue, spec.job_type, spec.priority) == (r.id, "acme", "q", "noop", 7)
    assert (spec.attempt, spec.max_attempts, spec.timeout_ms, spec.payload) == (2, 3, 1000, {"x": 1})
    assert spec.retry == RetryPolicy(strategy="fixed", base_delay_ms=10)
    assert spec.submitted_at_ms == NOW_MS - 5000


def test_odd_stored_data_never_breaks_the_spec() -> None:
    spec = spec_for(row(retry={"strategy": "bogus"}, payload=[1, 2]), 1)
    assert spec.retry == RetryPolicy()  # a bad stored policy falls back to the default
    assert spec.payload == {"value": [1, 2]}


def test_timestamps_from_event_data() -> None:
    assert parse_time("2030-01-01T12:00:00+00:00") == NOW
    assert parse_time("2030-01-01T12:00:00Z") == NOW
    assert parse_time("2030-01-01T12:00:00") == NOW  # naive means UTC
    assert parse_time(NOW_MS) == NOW
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert parse_time(True) is None


def test_reconciled_waiting_rows_go_back_at_their_due_time() -> None:
    assert due_at(row(status=JobStatus.QUEUED), NOW_MS) == NOW_MS
    due = NOW + timedelta(seconds=9)
    assert due_at(row(status=JobStatus.SCHEDULED, scheduled_for=due), NOW_MS) == to_ms(due)
    assert due_at(row(status=JobStatus.RETRYING, next_run_at=due), NOW_MS) == to_ms(due)
    # a retry that was already due runs now, not in the past
    assert due_at(row(status=JobStatus.RETRYING, next_run_at=NOW - timedelta(hours=1)), NOW_MS) == NOW_MS
