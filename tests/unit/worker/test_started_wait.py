"""`waitMs` of the started event: from when the attempt became due to the Redis time of its pop."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.worker import job_events
from shared.models import JobSpec

START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


def spec(due_at_ms: int = 0, submitted_at_ms: int = 0) -> JobSpec:
    return JobSpec(job_id=uuid.uuid4(), queue="q", job_type="noop", payload={}, due_at_ms=due_at_ms,
                   submitted_at_ms=submitted_at_ms)


def test_wait_counts_from_due_to_the_pop() -> None:
    due = spec(due_at_ms=START_MS - 1500, submitted_at_ms=START_MS - 9000)
    event = job_events.started(due, "w1", START, popped_ms=START_MS - 200)
    assert event.data == {"workerId": "w1", "startedAt": START.isoformat(), "waitMs": 1300}
    # Without the pop's Redis time, the worker's own start time; never negative (clocks differ).
    assert job_events.wait_ms(due, START) == 1500
    assert job_events.wait_ms(spec(due_at_ms=START_MS + 50), START) == 0


def test_a_spec_that_does_not_say_when_it_was_due_has_no_wait() -> None:
    event = job_events.started(spec(submitted_at_ms=START_MS - 9000), "w1", START, popped_ms=START_MS)
    assert set(event.data) == {"workerId", "startedAt"}
