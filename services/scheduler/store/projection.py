"""SQL of event projection: the batched row, attempt, progress, log and checkpoint writes of one consumer batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from services.scheduler.store.jobs import TERMINAL_SQL
from shared.events import RANK, EventType
from shared.models import JobStatus

if TYPE_CHECKING:
    from services.scheduler.projection import AttemptChange, Ending, RowChange

MAX_LOG_LINES = 200

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
    checkpoint = CASE WHEN u.has_checkpoint THEN u.checkpoint::jsonb ELSE jobs.checkpoint END,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::timestamptz[],
            $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::text[], $11::text[], $12::bool[])
    AS u(id, status, attempt, rank, started_at, ended_at, result, error, next_run_at, cancel_reason,
         checkpoint, has_checkpoint)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (jobs.state_attempt, jobs.state_rank) < (u.attempt, u.rank)
RETURNING jobs.id, jobs.status
"""
# One row per attempt, the successful one included. A finished attempt keeps its outcome (and the
# id of the event that ended it); later duplicates only fill in what it lacks.
UPSERT_ATTEMPTS = """
INSERT INTO job_attempts AS a (job_id, attempt, worker_id, status, started_at, ended_at, error, outcome_event)
SELECT u.job_id, u.attempt, u.worker_id, u.status, u.started_at, u.ended_at, u.error, u.outcome_event
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::jsonb[],
            $8::uuid[])
    AS u(job_id, attempt, worker_id, status, started_at, ended_at, error, outcome_event)
WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = u.job_id)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    status = CASE WHEN a.status = 'running' THEN EXCLUDED.status ELSE a.status END,
    worker_id = COALESCE(a.worker_id, EXCLUDED.worker_id),
    started_at = COALESCE(a.started_at, EXCLUDED.started_at),
    ended_at = CASE WHEN a.status = 'running' THEN EXCLUDED.ended_at ELSE a.ended_at END,
    error = CASE WHEN a.status = 'running' THEN EXCLUDED.error ELSE a.error END,
    outcome_event = CASE WHEN a.status = 'running' THEN EXCLUDED.outcome_event ELSE a.outcome_event END
"""
CANCEL_ATTEMPTS = """
UPDATE job_attempts SET status = 'cancelled', ended_at = u.ended_at, outcome_event = u.event_id
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::uuid[]) AS u(job_id, attempt, ended_at, event_id)
WHERE job_attempts.job_id = u.job_id AND job_attempts.attempt = u.attempt AND job_attempts.status = 'running'
"""
# An event that would end an attempt another event already ended: a late result, recorded (the
# first one only), never applied. Redeliveries carry the ending event's own id and change nothing.
RECORD_LATE_ENDINGS = """
UPDATE job_attempts AS a SET late_result = u.late
FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::jsonb[]) AS u(job_id, attempt, event_id, late)
WHERE a.job_id = u.job_id AND a.attempt = u.attempt AND a.status <> 'running'
  AND a.outcome_event IS NOT NULL AND a.outcome_event <> u.event_id AND a.late_result IS NULL
"""
# A late result its worker reported itself (its lease was gone): recorded on the attempt, first one kept.
RECORD_LATE_REPORTS = """
UPDATE job_attempts AS a SET late_result = u.late
FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(job_id, attempt, late)
WHERE a.job_id = u.job_id AND a.attempt = u.attempt AND a.late_result IS NULL
"""
# Progress never moves the row's state: it may arrive before `started` (another topic).
UPDATE_PROGRESS = f"""
UPDATE jobs SET progress = u.progress, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(id, attempt, progress)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (u.attempt, {RANK[EventType.PROGRESS]}) >= (jobs.state_attempt, jobs.state_rank)
"""

# A checkpoint follows the progress rule: never from an attempt the row has moved past.
UPDATE_CHECKPOINTS = f"""
UPDATE jobs SET checkpoint = u.checkpoint::jsonb, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS u(id, attempt, checkpoint)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (u.attempt, {RANK[EventType.PROGRESS]}) >= (jobs.state_attempt, jobs.state_rank)
"""
# Log lines are a record of what ran, whatever the row's state (the last lines of a job often
# arrive after its outcome: another topic); the newest MAX_LOG_LINES are kept, oldest first.
APPEND_LOGS = """
UPDATE jobs SET logs = (
    SELECT COALESCE(jsonb_agg(kept.line ORDER BY kept.n), '[]'::jsonb)
    FROM (
        SELECT t.line, t.n FROM jsonb_array_elements(jobs.logs || u.lines::jsonb) WITH ORDINALITY AS t(line, n)
        ORDER BY t.n DESC LIMIT $3
    ) AS kept
)
FROM unnest($1::uuid[], $2::text[]) AS u(id, lines)
WHERE jobs.id = u.id
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
        [_json(c.checkpoint) if c.has_checkpoint else None for c in changes], [c.has_checkpoint for c in changes],
    )
    return {r["id"]: JobStatus(r["status"]) for r in records}


async def upsert_attempts(conn: asyncpg.Connection, attempts: Sequence[AttemptChange]) -> None:
    """Write one job_attempts row per (job, attempt)."""
    await conn.execute(
        UPSERT_ATTEMPTS,
        [a.job_id for a in attempts], [a.attempt for a in attempts], [a.worker_id for a in attempts],
        [a.status for a in attempts], [a.started_at for a in attempts], [a.ended_at for a in attempts],
        [a.error for a in attempts], [a.outcome_event for a in attempts],
    )


async def cancel_attempts(
    conn: asyncpg.Connection, ended: Sequence[tuple[uuid.UUID, int, datetime, uuid.UUID]]
) -> None:
    """Mark running attempts (job, attempt, ended at, by event) cancelled."""
    await conn.execute(
        CANCEL_ATTEMPTS, [e[0] for e in ended], [e[1] for e in ended], [e[2] for e in ended], [e[3] for e in ended]
    )


async def record_late_endings(conn: asyncpg.Connection, endings: Sequence[Ending]) -> None:
    """Record, as late results, the endings of attempts another event already ended."""
    await conn.execute(
        RECORD_LATE_ENDINGS, [x.job_id for x in endings], [x.attempt for x in endings],
        [x.event_id for x in endings], [x.late for x in endings],
    )


async def record_late_reports(conn: asyncpg.Connection, reports: Sequence[tuple[uuid.UUID, int, Any]]) -> None:
    """Record the late results workers reported (job, attempt, record)."""
    await conn.execute(RECORD_LATE_REPORTS, [r[0] for r in reports], [r[1] for r in reports], [r[2] for r in reports])


async def update_checkpoints(conn: asyncpg.Connection, checkpoints: Sequence[tuple[uuid.UUID, int, Any]]) -> None:
    """Store the latest checkpoint (job, attempt, state) of rows not past that attempt."""
    await conn.execute(
        UPDATE_CHECKPOINTS, [c[0] for c in checkpoints], [c[1] for c in checkpoints],
        [_json(c[2]) for c in checkpoints],
    )


async def append_logs(conn: asyncpg.Connection, logs: Sequence[tuple[uuid.UUID, list[Any]]]) -> None:
    """Append log lines (job, lines) to each job's log, keeping the newest MAX_LOG_LINES."""
    await conn.execute(APPEND_LOGS, [x[0] for x in logs], [_json(x[1]) for x in logs], MAX_LOG_LINES)


def _json(value: Any) -> str | None:
    # As text, cast in SQL: asyncpg would read a list inside a jsonb[] argument as another array dimension.
    return None if value is None else orjson.dumps(value).decode()


async def update_progress(conn: asyncpg.Connection, progress: Sequence[tuple[uuid.UUID, int, Any]]) -> None:
    """Store the latest progress (job, attempt, progress) of rows not past that attempt."""
    await conn.execute(UPDATE_PROGRESS, [p[0] for p in progress], [p[1] for p in progress], [p[2] for p in progress])
