"""SQL of the job rows dispatch reads and moves: lock and load, apply decisions, promote, lost attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.scheduler.rows import JobRow
from shared.events import RANK, EventType
from shared.models import TERMINAL, JobStatus

# Everything needed to decide a dispatch and build the worker's spec.
COLUMNS = (
    "id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,"
    " scheduled_for, depends_on, attempts, state_attempt, state_rank, created_at, updated_at,"
    " next_run_at, started_at, trace_parent, cancel_requested, rate_limit_key, concurrency_key, fairness_key,"
    " checkpoint"
)
# `('cancelled', 'completed', 'failed')`: the SQL spelling of shared.models.TERMINAL.
TERMINAL_SQL = "(" + ", ".join(f"'{status.value}'" for status in sorted(TERMINAL)) + ")"

# FOR UPDATE in id order: concurrent scheduler transactions lock rows in the same order, and
# a row cancelled or dispatched meanwhile drops out when the lock is granted.
LOCK_ROWS = f"""
SELECT {COLUMNS} FROM jobs
WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])
ORDER BY id FOR UPDATE
"""
# The reconciler's variant: only rows that stayed unchanged for the grace period.
LOCK_UNCHANGED_ROWS = f"""
SELECT {COLUMNS} FROM jobs
WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[]) AND updated_at < $3
ORDER BY id FOR UPDATE
"""
# Served by the partial GIN index jobs_depends_on (status = 'blocked').
LOCK_BLOCKED_DEPENDENTS = f"""
SELECT {COLUMNS} FROM jobs
WHERE status = 'blocked' AND depends_on && $1::uuid[]
ORDER BY id FOR UPDATE
"""
DEPENDENCY_STATUSES = "SELECT id, status FROM jobs WHERE id = ANY($1::uuid[])"
APPLY_DECISIONS = """
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
LOCK_STATES = """
SELECT id, status, state_attempt, state_rank, started_at FROM jobs
WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""
# Rows still waiting for this attempt become queued; a row already past it (or terminal) is left
# alone. `running` is accepted: should a promotion ever overtake the event before it, the row
# still records the attempt Redis hands out.
PROMOTE = f"""
UPDATE jobs SET
    status = 'queued', state_attempt = u.attempt, state_rank = {RANK[EventType.DISPATCHED]},
    next_run_at = NULL, progress = NULL, updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS u(id, attempt)
WHERE jobs.id = u.id
  AND jobs.status IN ('scheduled', 'retrying', 'queued', 'running')
  AND (jobs.state_attempt, jobs.state_rank) < (u.attempt, {RANK[EventType.DISPATCHED]})
RETURNING jobs.id, jobs.tenant, jobs.queue, jobs.job_type, jobs.priority
"""
LIVE_IDS = f"SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND status NOT IN {TERMINAL_SQL}"
TERMINAL_ROWS = f"""
SELECT id, queue, state_attempt FROM jobs WHERE id = ANY($1::uuid[]) AND status IN {TERMINAL_SQL}
"""


@dataclass(frozen=True, slots=True)
class RowState:
    """Where a row stands, as the rank rule reads it."""

    id: uuid.UUID
    status: JobStatus
    state: tuple[int, int]
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class Promoted:
    """A row a promotion moved to queued."""

    id: uuid.UUID
    tenant: str
    queue: str
    job_type: str
    priority: int


@dataclass(frozen=True, slots=True)
class Finished:
    """A terminal row: its queue and the attempt it ended at."""

    id: uuid.UUID
    queue: str
    state_attempt: int


async def lock_rows(
    conn: asyncpg.Connection,
    job_ids: Sequence[uuid.UUID],
    statuses: Sequence[str],
    *,
    unchanged_since: datetime | None = None,
) -> list[JobRow]:
    """Lock and read the rows among `job_ids` still in one of `statuses` (and unchanged since, if given)."""
    if not job_ids:
        return []
    if unchanged_since is None:
        records = await conn.fetch(LOCK_ROWS, list(job_ids), list(statuses))
    else:
        records = await conn.fetch(LOCK_UNCHANGED_ROWS, list(job_ids), list(statuses), unchanged_since)
    return [JobRow.from_record(r) for r in records]


async def lock_blocked_dependents(conn: asyncpg.Connection, finished: Sequence[uuid.UUID]) -> list[JobRow]:
    """Lock and read the blocked rows that depend on any of `finished`."""
    return [JobRow.from_record(r) for r in await conn.fetch(LOCK_BLOCKED_DEPENDENTS, list(finished))]


async def dependency_statuses(conn: asyncpg.Connection, dep_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Current status of each of these jobs (missing jobs are absent)."""
    if not dep_ids:
        return {}
    return {r["id"]: r["status"] for r in await conn.fetch(DEPENDENCY_STATUSES, list(dep_ids))}


async def apply_decisions(
    conn: asyncpg.Connection,
    job_ids: Sequence[uuid.UUID],
    statuses: Sequence[str],
    states: Sequence[tuple[int, int]],
    cancel_reasons: Sequence[str | None],
    expected: Sequence[str],
) -> set[uuid.UUID]:
    """Move rows still in their `expected` status; returns the ids moved."""
    records = await conn.fetch(
        APPLY_DECISIONS, list(job_ids), list(statuses), [s[0] for s in states], [s[1] for s in states],
        list(cancel_reasons), list(expected),
    )
    return {r["id"] for r in records}


async def lock_states(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RowState]:
    """Lock the rows and read where each stands."""
    records = await conn.fetch(LOCK_STATES, sorted(set(job_ids)))
    return {
        r["id"]: RowState(r["id"], JobStatus(r["status"]), (r["state_attempt"], r["state_rank"]), r["started_at"])
        for r in records
    }


async def promote(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], attempts: Sequence[int]
) -> list[Promoted]:
    """Record promoted attempts as queued where the rows still wait for them."""
    records = await conn.fetch(PROMOTE, list(job_ids), list(attempts))
    return [Promoted(r["id"], r["tenant"], r["queue"], r["job_type"], r["priority"]) for r in records]


async def live_ids(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The ids among these whose rows exist and are not terminal."""
    return {r["id"] for r in await conn.fetch(LIVE_IDS, list(job_ids))}


async def terminal_rows(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> list[Finished]:
    """The rows among these that are terminal."""
    records = await conn.fetch(TERMINAL_ROWS, list(job_ids))
    return [Finished(r["id"], r["queue"], r["state_attempt"]) for r in records]
