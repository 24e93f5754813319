"""The rows a batch of new events adds up to (no database): each event once per table, rows sorted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.analytics.tally import Tally
from shared.analytics.histogram import bucket_of
from shared.events import Envelope, EventType

T0 = datetime(2024, 5, 1, 23, 59, 30, tzinfo=UTC)
E = EventType


def env(kind: EventType, at: datetime, queue: str = "q", attempt: int = 1, **data: Any) -> Envelope:
    return Envelope(type=kind, job_id=uuid.uuid4(), queue=queue, job_type="t", attempt=attempt, occurred_at=at,
                    data=data)


def tally(*events: Envelope) -> Tally:
    return Tally().add_all(events)


def test_minutes_roll_up_into_hours_and_days_and_come_out_sorted() -> None:
    events = [
        env(E.COMPLETED, T0 + timedelta(minutes=1), queue="b", attempt=2, durationMs=700, workerId="w"),
        env(E.COMPLETED, T0, queue="b", durationMs=3, workerId="w"),
        env(E.RETRY, T0, queue="a", attempt=3, error={"type": "Timeout"}, durationMs=5),
        env(E.PROGRESS, T0, queue="a"),  # queue_minute_stats only
    ]
    t = tally(*events)
    hours, days = t.rolled_up()
    minute, next_day = T0.replace(second=0), (T0 + timedelta(minutes=1)).replace(second=0)
    key, summed, arrays, errors = (lambda c: (c[:4], c[4:14], c[14:19], c[19]))(t.stats_columns(t.minutes))
    assert key == [["default"] * 3, ["a", "b", "b"], ["t"] * 3, [minute, minute, next_day]]
    assert [column[0] for column in summed] == [0, 0, 0, 0, 1, 0, 5, 1, 0, 0]  # the retry
    assert [column[0] for column in arrays] == [f"{{{'0,' * bucket_of(5)}1}}", "{}", "{}", "{0,0,1}", "{}"]
    assert errors == [{"Timeout": 1}, {}, {}]
    day_keys, _, day_arrays = (lambda c: (c[:4], c[4:14], c[14:19]))(t.stats_columns(days))
    assert day_keys[3] == [minute.replace(hour=0, minute=0), minute.replace(hour=0, minute=0), next_day]
    assert day_arrays[2] == ["{}", "{1}", "{0,1}"]  # completed_by_attempt: attempt 1 on day 1, 2 on day 2
    assert len(hours) == 3
    assert t.worker_columns() == [["w", "w"], [minute, next_day], [1, 1], [0, 0], [0, 0], [3, 700]]
    assert t.queue_minute_columns() == [
        ["a", "a", "b", "b"], [minute, minute, minute, next_day], ["progress", "retry", "completed", "completed"],
        [1, 1, 1, 1], [0, 0, 3, 700]]


def test_a_batch_without_counted_events_writes_no_stats_rows() -> None:
    t = tally(env(E.DISPATCHED, T0), env(E.PROGRESS, T0))
    assert t.minutes == {}
    assert t.rolled_up() == ({}, {})
    assert t.stats_columns(t.minutes)[0] == []
    assert t.queue_minute_columns()[2:4] == [["dispatched", "progress"], [1, 1]]
