"""Collapsing a batch of events to one change per row, and the rank rule (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.scheduler.projection import applies, plan
from shared.events import Envelope, EventType
from shared.models import JobStatus

# The ranks of the staleness rule (docs/adr/0001), stated here rather than read from events.RANK.
RANK_OF = {EventType.STARTED: 2, EventType.RETRY: 4, EventType.COMPLETED: 4, EventType.FAILED: 4,
           EventType.CANCELLED: 5}
T0 = datetime(2030, 1, 1, tzinfo=UTC)
JOB = uuid.uuid4()
ERR = {"type": "transient", "message": "boom", "retryable": True}


def ev(kind: EventType, attempt: int, job: uuid.UUID = JOB, **data: Any) -> Envelope:
    return Envelope(type=kind, job_id=job, queue="q", job_type="t", attempt=attempt, data=data)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def test_started_then_completed_collapse_to_completed_with_both_times() -> None:
    p = plan([
        ev(EventType.STARTED, 1, workerId="w1", startedAt=at(1)),
        ev(EventType.COMPLETED, 1, workerId="w1", result={"ok": 1}, startedAt=at(1), endedAt=at(3)),
    ])
    change = p.rows[JOB]
    assert change.status is JobStatus.COMPLETED and change.key == (1, 4)  # completed ranks 4
    assert (change.started_at, change.ended_at, change.result) == (T0 + timedelta(seconds=1),
                                                                   T0 + timedelta(seconds=3), {"ok": 1})
    attempt = p.attempts[(JOB, 1)]
    assert (attempt.status, attempt.worker_id, attempt.ended_at) == ("completed", "w1", T0 + timedelta(seconds=3))


def test_a_stale_started_after_completed_changes_nothing() -> None:
    p = plan([
        ev(EventType.COMPLETED, 1, workerId="w1", result=None, startedAt=at(1), endedAt=at(2)),
        ev(EventType.STARTED, 1, workerId="w1", startedAt=at(1)),
    ])
    assert p.rows[JOB].status is JobStatus.COMPLETED
    assert p.attempts[(JOB, 1)].status == "completed"


def test_a_retry_error_survives_the_next_attempt_starting_in_the_same_batch() -> None:
    p = plan([
        ev(EventType.STARTED, 1, workerId="w1", startedAt=at(1)),
        ev(EventType.RETRY, 1, error=ERR, nextRunAt=at(5), delayMs=3000, workerId="w1", startedAt=at(1),
           endedAt=at(2)),
        ev(EventType.STARTED, 2, workerId="w2", startedAt=at(6)),
    ])
    change = p.rows[JOB]
    assert (change.status, change.attempt, change.error) == (JobStatus.RUNNING, 2, ERR)
    assert change.next_run_at is None
    assert p.attempts[(JOB, 1)].status == "failed" and p.attempts[(JOB, 1)].error == ERR
    assert p.attempts[(JOB, 2)].status == "running" and p.attempts[(JOB, 2)].worker_id == "w2"


def test_completed_clears_the_error_of_earlier_attempts() -> None:
    p = plan([
        ev(EventType.RETRY, 1, error=ERR, nextRunAt=at(5), endedAt=at(2)),
        ev(EventType.COMPLETED, 2, result=1, startedAt=at(6), endedAt=at(7)),
    ])
    assert p.rows[JOB].error is None and p.rows[JOB].status is JobStatus.COMPLETED


def test_progress_keeps_the_latest_report_and_needs_no_attempt_row() -> None:
    p = plan([
        ev(EventType.PROGRESS, 1, progress={"percent": 10}),
        ev(EventType.PROGRESS, 1, progress={"percent": 60}),
    ])
    assert p.progress[JOB] == (1, {"percent": 60})
    assert p.rows == {} and p.attempts == {}


def test_a_cancel_of_a_running_attempt_is_recorded_on_that_attempt() -> None:
    p = plan([ev(EventType.CANCELLED, 2, reason="cancelled_by_user", by="worker")])
    assert p.rows[JOB].status is JobStatus.CANCELLED and p.rows[JOB].cancel_reason == "cancelled_by_user"
    assert (JOB, 2) in p.cancelled_attempts and p.attempts == {}
    # a cancel before any attempt ran touches no attempt row
    assert plan([ev(EventType.CANCELLED, 0, reason="dependency_failed")]).cancelled_attempts == {}


def test_rank_rule() -> None:
    assert applies("queued", (1, 1), 1, EventType.STARTED)
    assert not applies("running", (1, 2), 1, EventType.STARTED)  # duplicate
    assert not applies("retrying", (2, 1), 1, EventType.RETRY)  # older attempt
    assert applies("running", (1, 2), 1, EventType.PROGRESS)
    assert applies("queued", (1, 3), 1, EventType.PROGRESS)  # progress may repeat
    assert not applies("completed", (1, 4), 2, EventType.STARTED)  # terminal rows take nothing
    assert not applies("cancelled", (0, 5), 1, EventType.STARTED)


@given(st.lists(st.tuples(st.sampled_from(list(RANK_OF)), st.integers(1, 3)), min_size=1, max_size=12))
def test_the_collapsed_row_is_the_highest_event(events: list[tuple[EventType, int]]) -> None:
    # Whatever the arrival order, the row ends at the highest (attempt, rank); the first of equals wins.
    batch = [ev(kind, attempt, error=ERR, endedAt=at(1)) for kind, attempt in events]
    best = max(batch, key=lambda e: (e.attempt, RANK_OF[e.type]))
    first_best = next(e for e in batch if (e.attempt, RANK_OF[e.type]) == (best.attempt, RANK_OF[best.type]))
    change = plan(batch).rows[JOB]
    assert change.key == (best.attempt, RANK_OF[best.type])
    assert change.status.value == {"started": "running", "retry": "retrying"}.get(first_best.type.value,
                                                                                   first_best.type.value)
