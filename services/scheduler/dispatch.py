"""Dispatch decisions for pending and blocked rows: block, cancel, schedule or queue them (batched)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from services.scheduler.rows import COLUMNS, JobRow, dependency_cancelled_event, dispatched_event, spec_for, to_ms
from services.scheduler.txn import Effects
from shared.events import RANK, EventType
from shared.models import JobStatus

# FOR UPDATE in id order: concurrent scheduler transactions lock rows in the same order, and
# a row cancelled or dispatched meanwhile drops out when the lock is granted.
_LOAD = f"""
SELECT {COLUMNS} FROM jobs
WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])
ORDER BY id FOR UPDATE
"""
# The reconciler's variant: only rows that stayed unchanged for the grace period.
_LOAD_STALE = f"""
SELECT {COLUMNS} FROM jobs
WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[]) AND updated_at < $3
ORDER BY id FOR UPDATE
"""
_DEP_STATUS = "SELECT id, status FROM jobs WHERE id = ANY($1::uuid[])"
_APPLY = """
UPDATE jobs SET
    status = u.status,
    state_attempt = u.state_attempt,
    state_rank = u.state_rank,
    cancel_reason = COALESCE(u.cancel_reason, jobs.cancel_reason),
    completed_at = CASE WHEN u.status = 'cancelled' THEN now() ELSE jobs.completed_at END,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[])
    AS u(id, status, state_attempt, state_rank, cancel_reason, expected)
WHERE jobs.id = u.id AND jobs.status = u.expected
RETURNING jobs.id
"""

DISPATCHABLE = (JobStatus.PENDING.value, JobStatus.BLOCKED.value)
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


async def load(
    conn: asyncpg.Connection,
    job_ids: Sequence[uuid.UUID],
    statuses: Sequence[str] = DISPATCHABLE,
    *,
    unchanged_since: datetime | None = None,
) -> list[JobRow]:
    """Lock and read the rows among `job_ids` that are still in one of `statuses`."""
    if not job_ids:
        return []
    if unchanged_since is None:
        records = await conn.fetch(_LOAD, list(job_ids), list(statuses))
    else:
        records = await conn.fetch(_LOAD_STALE, list(job_ids), list(statuses), unchanged_since)
    return [JobRow.from_record(r) for r in records]


async def dependency_statuses(conn: asyncpg.Connection, rows: Sequence[JobRow]) -> dict[uuid.UUID, str]:
    """Current status of every dependency the rows name (missing jobs are absent)."""
    dep_ids = {dep for row in rows for dep in row.depends_on}
    if not dep_ids:
        return {}
    return {r["id"]: r["status"] for r in await conn.fetch(_DEP_STATUS, list(dep_ids))}


Applied = dict[Outcome, list[uuid.UUID]]


async def dispatch_rows(conn: asyncpg.Connection, rows: Sequence[JobRow], fx: Effects, *, now_ms: int) -> Applied:
    """Decide and apply the next step of locked pending/blocked rows; returns the ids moved, by outcome.

    Row updates go in one statement; events go to `fx.events`, Redis pushes to `fx.pushes`.
    """
    dep_status = await dependency_statuses(conn, rows)
    decisions = [d for row in rows if (d := decide(row, dep_status, now_ms)) is not None]
    done: Applied = {outcome: [] for outcome in Outcome}
    if not decisions:
        return done
    applied = {
        r["id"]
        for r in await conn.fetch(
            _APPLY,
            [d.row.id for d in decisions],
            [d.outcome.value for d in decisions],
            [d.state[0] for d in decisions],
            [d.state[1] for d in decisions],
            [DEPENDENCY_FAILED if d.outcome is Outcome.CANCELLED else None for d in decisions],
            [d.row.status.value for d in decisions],
        )
    }
    for d in decisions:
        if d.row.id not in applied:
            continue
        done[d.outcome].append(d.row.id)
        if d.outcome is Outcome.QUEUED:
            fx.events.append(dispatched_event(d.row, d.attempt))
            fx.pushes.append((spec_for(d.row, d.attempt), 0))
        elif d.outcome is Outcome.SCHEDULED:
            fx.pushes.append((spec_for(d.row, d.attempt), d.run_at_ms))
        elif d.outcome is Outcome.CANCELLED:
            fx.events.append(dependency_cancelled_event(d.row, d.attempt))
    return done


async def dispatch_pending(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], fx: Effects, *, now_ms: int
) -> Applied:
    """Dispatch the submitted jobs whose rows are still pending (redeliveries find none)."""
    rows = await load(conn, job_ids, (JobStatus.PENDING.value,))
    return await dispatch_rows(conn, rows, fx, now_ms=now_ms)
