"""Dispatch decisions for pending and blocked rows: block, cancel, schedule or queue them (batched)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from services.scheduler.rows import JobRow, cancelled_event, dispatched_event, spec_for, to_ms
from services.scheduler.store import jobs as store
from services.scheduler.txn import Effects
from shared.events import RANK, EventType
from shared.models import JobStatus

DEPENDENCY_FAILED = "dependency_failed"


class Outcome(StrEnum):
    """Where a pending or blocked row goes next."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Decision:
    """The next step of one row; `attempt` is the attempt dispatched (or cancelled) now."""

    row: JobRow
    outcome: Outcome
    attempt: int
    run_at_ms: int = 0

    @property
    def state(self) -> tuple[int, int]:
        """(state_attempt, state_rank) the row records, so older events about it become stale."""
        if self.outcome is Outcome.QUEUED:
            return self.attempt, RANK[EventType.DISPATCHED]
        if self.outcome is Outcome.CANCELLED:
            return self.attempt, RANK[EventType.CANCELLED]
        return self.row.state_attempt, self.row.state_rank


def decide(row: JobRow, dep_status: Mapping[uuid.UUID, str], now_ms: int) -> Decision | None:
    """The next step of a pending or blocked row; None when it stays as it is.

    A dependency that no longer exists can never complete, so it counts as failed.
    """
    if row.depends_on:
        statuses = [dep_status.get(dep) for dep in row.depends_on]
        if any(s is None or s in (JobStatus.FAILED, JobStatus.CANCELLED) for s in statuses):
            return Decision(row, Outcome.CANCELLED, max(row.attempts, row.state_attempt))
        if any(s != JobStatus.COMPLETED for s in statuses):
            if row.status is JobStatus.BLOCKED:
                return None
            return Decision(row, Outcome.BLOCKED, row.next_attempt)
    attempt = row.next_attempt
    if row.scheduled_for is not None and to_ms(row.scheduled_for) > now_ms:
        return Decision(row, Outcome.SCHEDULED, attempt, to_ms(row.scheduled_for))
    return Decision(row, Outcome.QUEUED, attempt)


Applied = dict[Outcome, list[uuid.UUID]]


async def dispatch_rows(conn: asyncpg.Connection, rows: Sequence[JobRow], fx: Effects, *, now_ms: int) -> Applied:
    """Decide and apply the next step of locked pending/blocked rows; returns the ids moved, by outcome.

    Row updates go in one statement; events go to `fx.events`, Redis pushes to `fx.dispatches`.
    """
    dep_status = await store.dependency_statuses(conn, sorted({dep for row in rows for dep in row.depends_on}))
    decisions = [d for row in rows if (d := decide(row, dep_status, now_ms)) is not None]
    done: Applied = {outcome: [] for outcome in Outcome}
    if not decisions:
        return done
    applied = await store.apply_decisions(
        conn,
        [d.row.id for d in decisions],
        [d.outcome.value for d in decisions],
        [d.state for d in decisions],
        [DEPENDENCY_FAILED if d.outcome is Outcome.CANCELLED else None for d in decisions],
        [d.row.status.value for d in decisions],
    )
    # In submission order (rows come locked in id order): each push takes its queue's next sequence
    # number, which keeps FIFO within a priority.
    for d in sorted(decisions, key=lambda d: (d.row.created_at, d.row.id)):
        if d.row.id not in applied:
            continue
        done[d.outcome].append(d.row.id)
        if d.outcome in (Outcome.QUEUED, Outcome.SCHEDULED):
            # Fresh: a waiting copy Redis still holds at this attempt number is stale (a manual
            # retry's row may reuse the number of a cancelled scheduled or retry copy it never recorded).
            fx.dispatches.append((spec_for(d.row, d.attempt), d.run_at_ms))
        if d.outcome is Outcome.QUEUED:
            fx.events.append(dispatched_event(d.row, d.attempt))
        elif d.outcome is Outcome.CANCELLED:
            fx.events.append(cancelled_event(d.row, d.attempt, DEPENDENCY_FAILED))
    return done


async def dispatch_pending(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], fx: Effects, *, now_ms: int
) -> Applied:
    """Dispatch the submitted jobs whose rows are still pending (redeliveries find none)."""
    rows = await store.lock_rows(conn, job_ids, (JobStatus.PENDING.value,))
    return await dispatch_rows(conn, rows, fx, now_ms=now_ms)
