"""SQL of event projection: the batched row, attempt and progress writes of one consumer batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from services.scheduler.store.jobs import TERMINAL_SQL
from shared.events import RANK, EventType
from shared.models import JobStatus

if TYPE_CHECKING:
    from services.scheduler.projection import AttemptChange, RowChange

# The rank rule in SQL: a row moves only when the event's (attempt, rank) is above its own.
UPDATE_ROWS = f"""
UPDATE jobs SET
    status = u.status,
    state_attempt = u.attempt,
    state_rank = u.rank,
    attempts = CASE WHEN u.status = 'cancelled' THEN jobs.attempts ELSE greatest(jobs.attempts, u.attempt) END,
    started_at = COALESCE(u.started_at, jobs.started_at),
    completed_at = CASE WHEN u.status IN {TERMINAL_SQL} THEN u.ended_at END,
    result = CASE WHEN u.status = 'completed' THEN u.result ELSE jobs.result END,
    error = CASE WHEN u.status = 'completed' THEN NULL ELSE COALESCE(u.error, jobs.error) END,
    next_run_at = u.next_run_at,
    cancel_reason = COALESCE(u.cancel_reason, jobs.cancel_reason),
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::timestamptz[],
            $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::text[])
    AS u(id, status, attempt, rank, started_at, ended_at, result, error, next_run_at, cancel_reason)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (jobs.state_attempt, jobs.state_rank) < (u.attempt, u.rank)
RETURNING jobs.id, jobs.status
"""
# One row per attempt, the successful one included. A finished attempt keeps its outcome;
# later duplicates only fill in what it lacks.
UPSERT_ATTEMPTS = """
INSERT INTO job_attempts AS a (job_id, attempt, worker_id, status, started_at, ended_at, error)
SELECT u.job_id, u.attempt, u.worker_id, u.status, u.started_at, u.ended_at, u.error
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::jsonb[])
    AS u(job_id, attempt, worker_id, status, started_at, ended_at, error)
WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = u.job_id)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    status = CASE WHEN a.status = 'running' THEN EXCLUDED.status ELSE a.status END,
    worker_id = COALESCE(a.worker_id, EXCLUDED.worker_id),
    started_at = COALESCE(a.started_at, EXCLUDED.started_at),
    ended_at = CASE WHEN a.status = 'running' THEN EXCLUDED.ended_at ELSE a.ended_at END,
    error = CASE WHEN a.status = 'running' THEN EXCLUDED.error ELSE a.error END
"""
CANCEL_ATTEMPTS = """
UPDATE job_attempts SET status = 'cancelled', ended_at = u.ended_at
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS u(job_id, attempt, ended_at)
WHERE job_attempts.job_id = u.job_id AND job_attempts.attempt = u.attempt AND job_attempts.status = 'running'
"""
# Progress never moves the row's state: it may arrive before `started` (another topic).
UPDATE_PROGRESS = f"""
UPDATE jobs SET progress = u.progress, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(id, attempt, progress)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (u.attempt, {RANK[EventType.PROGRESS]}) >= (jobs.state_attempt, jobs.state_rank)
"""


async def update_rows(conn: asyncpg.Connection, changes: Sequence[RowChange]) -> dict[uuid.UUID, JobStatus]:
    """Apply row changes under the rank rule; returns the rows moved and their new status."""
    records = await conn.fetch(
        UPDATE_ROWS,
        [c.job_id for c in changes], [c.status.value for c in changes],
        [c.attempt for c in changes], [c.rank for c in changes],
        [c.started_at for c in changes], [c.ended_at for c in changes],
        [c.result for c in changes], [c.error for c in changes],
        [c.next_run_at for c in changes], [c.cancel_reason for c in changes],
    )
    return {r["id"]: JobStatus(r["status"]) for r in records}


async def upsert_attempts(conn: asyncpg.Connection, attempts: Sequence[AttemptChange]) -> None:
    """Write one job_attempts row per (job, attempt)."""
    await conn.execute(
        UPSERT_ATTEMPTS,
        [a.job_id for a in attempts], [a.attempt for a in attempts], [a.worker_id for a in attempts],
        [a.status for a in attempts], [a.started_at for a in attempts], [a.ended_at for a in attempts],
        [a.error for a in attempts],
    )


async def cancel_attempts(conn: asyncpg.Connection, ended: Sequence[tuple[uuid.UUID, int, datetime]]) -> None:
    """Mark running attempts (job, attempt, ended at) cancelled."""
    await conn.execute(CANCEL_ATTEMPTS, [e[0] for e in ended], [e[1] for e in ended], [e[2] for e in ended])


async def update_progress(conn: asyncpg.Connection, progress: Sequence[tuple[uuid.UUID, int, Any]]) -> None:
    """Store the latest progress (job, attempt, progress) of rows not past that attempt."""
    await conn.execute(UPDATE_PROGRESS, [p[0] for p in progress], [p[1] for p in progress], [p[2] for p in progress])
