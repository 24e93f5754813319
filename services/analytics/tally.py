"""The aggregate rows a batch of new events adds up to, as the column arrays the upserts take.

Computed in Python (one pass over the events, no Postgres CPU): each counted event adds to its
minute row of `stats_*` (the hour and day rows are the sums of those), a finished attempt with a
worker to that worker's minute, and every event to the older `queue_minute_stats`. Rows come out
sorted by key, histograms as dense `bigint[]` literals up to their highest slot used (exactly
what the stored arrays hold).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.analytics.facts import Facts, facts_of
from shared.events import Envelope, EventType

# The summed columns of a stats row, in sql.STATS_SUMMED order (the first six are event counts).
COUNT_COLUMN = {
    EventType.SUBMITTED: 0, EventType.STARTED: 1, EventType.COMPLETED: 2,
    EventType.FAILED: 3, EventType.RETRY: 4, EventType.CANCELLED: 5,
}
DURATION_SUM, DURATION_COUNT, WAIT_SUM, WAIT_COUNT = 6, 7, 8, 9
SUMMED = 10
# The arrays of a stats row, in sql.STATS_ARRAYS order; outcomes count attempts in their own array.
DURATION_HIST, WAIT_HIST = 0, 1
BY_ATTEMPT = {EventType.COMPLETED: 2, EventType.RETRY: 3, EventType.FAILED: 4}
ARRAYS = 5
# worker_stats_minute's counters: completed, failed, retried (then busy_ms).
WORKER_COLUMN = {EventType.COMPLETED: 0, EventType.FAILED: 1, EventType.RETRY: 2}

StatsKey = tuple[str, str, str, datetime]  # tenant, queue, job type, bucket


@dataclass
class StatsRow:
    """One stats_* row's additions: sums, sparse arrays (1-based slot -> count), error counts."""

    sums: list[int] = field(default_factory=lambda: [0] * SUMMED)
    arrays: tuple[dict[int, int], ...] = field(default_factory=lambda: tuple({} for _ in range(ARRAYS)))
    errors: dict[str, int] = field(default_factory=dict)


def _bump(counts: dict[int, int], slot: int) -> None:
    counts[slot] = counts.get(slot, 0) + 1


def _dense(counts: dict[int, int]) -> str:
    """A sparse {slot: count} as a bigint[] literal from slot 1 to the highest slot used."""
    if not counts:
        return "{}"
    dense = [0] * max(counts)
    for slot, n in counts.items():
        dense[slot - 1] = n
    return "{" + ",".join(map(str, dense)) + "}"


class Tally:
    """The additions of a batch of new events to every aggregate table."""

    def __init__(self) -> None:
        self.minutes: dict[StatsKey, StatsRow] = {}
        self.workers: dict[tuple[str, datetime], list[int]] = {}  # completed, failed, retried, busy_ms
        self.queue_minutes: dict[tuple[str, datetime, str], list[int]] = {}  # count, completed ms

    def add_all(self, events: Iterable[Envelope]) -> Tally:
        """Add every event; returns self."""
        for envelope in events:
            self.add(envelope)
        return self

    def add(self, envelope: Envelope) -> None:
        """Count one new event once in each table it belongs to."""
        kind = envelope.type
        # The bucket of the stored occurred_at: asyncpg converts with astimezone too (a naive time is local).
        minute = envelope.occurred_at.astimezone(UTC).replace(second=0, microsecond=0)
        by_queue = self.queue_minutes.get((envelope.queue, minute, kind.value))
        if by_queue is None:
            by_queue = self.queue_minutes[(envelope.queue, minute, kind.value)] = [0, 0]
        by_queue[0] += 1
        count_column = COUNT_COLUMN.get(kind)
        if count_column is None:
            return  # dispatched and progress events add nothing else
        facts = facts_of(envelope)
        if kind is EventType.COMPLETED and facts.duration_ms is not None:
            by_queue[1] += facts.duration_ms
        if facts.worker_id is not None:
            worker = self.workers.get((facts.worker_id, minute))
            if worker is None:
                worker = self.workers[(facts.worker_id, minute)] = [0, 0, 0, 0]
            worker[WORKER_COLUMN[kind]] += 1
            worker[3] += facts.duration_ms or 0
        key = (envelope.tenant, envelope.queue, envelope.job_type, minute)
        row = self.minutes.get(key)
        if row is None:
            row = self.minutes[key] = StatsRow()
        _add_to_row(row, kind, count_column, facts)

    def rolled_up(self) -> tuple[dict[StatsKey, StatsRow], dict[StatsKey, StatsRow]]:
        """The hour and day rows: the minute rows summed (each event counted once per resolution)."""
        hours: dict[StatsKey, StatsRow] = {}
        days: dict[StatsKey, StatsRow] = {}
        for (tenant, queue, job_type, minute), row in self.minutes.items():
            hour = minute.replace(minute=0)
            _merge(hours.setdefault((tenant, queue, job_type, hour), StatsRow()), row)
            _merge(days.setdefault((tenant, queue, job_type, hour.replace(hour=0)), StatsRow()), row)
        return hours, days

    def stats_columns(self, table: dict[StatsKey, StatsRow]) -> list[list[Any]]:
        """Stats rows (minutes, or one of rolled_up()) as one table's columns of sql.add_aggregates, sorted."""
        keys = sorted(table)
        rows = [table[k] for k in keys]
        return [
            *([k[i] for k in keys] for i in range(4)),
            *([r.sums[i] for r in rows] for i in range(SUMMED)),
            *([_dense(r.arrays[i]) for r in rows] for i in range(ARRAYS)),
            [r.errors for r in rows],
        ]

    def worker_columns(self) -> list[Sequence[Any]]:
        """worker_stats_minute's additions as sql.add_aggregates' worker columns, rows in key order."""
        keys = sorted(self.workers)
        return [[k[0] for k in keys], [k[1] for k in keys], *([self.workers[k][i] for k in keys] for i in range(4))]

    def queue_minute_columns(self) -> list[Sequence[Any]]:
        """queue_minute_stats' additions as sql.add_aggregates' queue minute columns, rows in key order."""
        keys = sorted(self.queue_minutes)
        values = [self.queue_minutes[k] for k in keys]
        return [*([k[i] for k in keys] for i in range(3)), *([v[i] for v in values] for i in range(2))]


def _merge(into: StatsRow, row: StatsRow) -> None:
    into.sums = [a + b for a, b in zip(into.sums, row.sums, strict=True)]
    for counts, more in zip(into.arrays, row.arrays, strict=True):
        for slot, n in more.items():
            counts[slot] = counts.get(slot, 0) + n
    for error, n in row.errors.items():
        into.errors[error] = into.errors.get(error, 0) + n


def _add_to_row(row: StatsRow, kind: EventType, count_column: int, facts: Facts) -> None:
    sums, arrays = row.sums, row.arrays
    sums[count_column] += 1
    if facts.duration_ms is not None and facts.duration_slot is not None:
        sums[DURATION_SUM] += facts.duration_ms
        sums[DURATION_COUNT] += 1
        _bump(arrays[DURATION_HIST], facts.duration_slot)
    if facts.wait_ms is not None and facts.wait_slot is not None:
        sums[WAIT_SUM] += facts.wait_ms
        sums[WAIT_COUNT] += 1
        _bump(arrays[WAIT_HIST], facts.wait_slot)
    attempts = BY_ATTEMPT.get(kind)
    if attempts is not None:
        _bump(arrays[attempts], facts.attempt_slot)
    if facts.error_type is not None:
        row.errors[facts.error_type] = row.errors.get(facts.error_type, 0) + 1
