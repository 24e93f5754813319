"""Projection of worker (and cancellation) events onto job rows and attempt rows: batched, idempotent.

A row records the (attempt, rank) of the last event applied to it; an event applies only
when its own (attempt, rank) is higher, so redeliveries and stale events change nothing.
Terminal rows accept nothing (a manual retry resets the row in the API).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from services.scheduler.rows import TERMINAL_SQL, parse_time
from shared.events import RANK, Envelope, EventType
from shared.models import TERMINAL, JobStatus

STATUS_OF: dict[EventType, JobStatus] = {
    EventType.STARTED: JobStatus.RUNNING,
    EventType.COMPLETED: JobStatus.COMPLETED,
    EventType.RETRY: JobStatus.RETRYING,
    EventType.FAILED: JobStatus.FAILED,
    EventType.CANCELLED: JobStatus.CANCELLED,
}
PROJECTED: frozenset[EventType] = frozenset({*STATUS_OF, EventType.PROGRESS})
# Events about one run of a handler, recorded in job_attempts.
ATTEMPT_EVENTS: frozenset[EventType] = frozenset(
    {EventType.STARTED, EventType.COMPLETED, EventType.RETRY, EventType.FAILED}
)

_UPDATE_ROWS = f"""
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
_UPSERT_ATTEMPTS = """
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
_CANCEL_ATTEMPTS = """
UPDATE job_attempts SET status = 'cancelled', ended_at = u.ended_at
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS u(job_id, attempt, ended_at)
WHERE job_attempts.job_id = u.job_id AND job_attempts.attempt = u.attempt AND job_attempts.status = 'running'
"""
# Progress never moves the row's state: it may arrive before `started` (another topic).
_UPDATE_PROGRESS = f"""
UPDATE jobs SET progress = u.progress, updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(id, attempt, progress)
WHERE jobs.id = u.id
  AND jobs.status NOT IN {TERMINAL_SQL}
  AND (u.attempt, {RANK[EventType.PROGRESS]}) >= (jobs.state_attempt, jobs.state_rank)
"""


def applies(status: str, state: tuple[int, int], attempt: int, kind: EventType) -> bool:
    """The rank rule: does an event of `kind` for `attempt` move a row at `state`?"""
    if status in TERMINAL:
        return False
    if kind is EventType.PROGRESS:
        return (attempt, RANK[kind]) >= state
    return (attempt, RANK[kind]) > state


@dataclass(frozen=True, slots=True)
class RowChange:
    """The net effect of a batch's events on one job row."""

    job_id: uuid.UUID
    status: JobStatus
    attempt: int
    rank: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    result: Any = None
    error: Any = None
    next_run_at: datetime | None = None
    cancel_reason: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        """(attempt, rank): what the rank rule compares."""
        return self.attempt, self.rank


@dataclass(frozen=True, slots=True)
class AttemptChange:
    """The net effect of a batch's events on one job_attempts row."""

    job_id: uuid.UUID
    attempt: int
    status: str
    rank: int
    worker_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: Any = None


@dataclass
class Plan:
    """A batch of events collapsed to one change per row."""

    rows: dict[uuid.UUID, RowChange]
    attempts: dict[tuple[uuid.UUID, int], AttemptChange]
    cancelled_attempts: dict[tuple[uuid.UUID, int], datetime]
    progress: dict[uuid.UUID, tuple[int, Any]]


def _error(data: dict[str, Any]) -> Any:
    err = data.get("error")
    return err if isinstance(err, dict) else None


def row_change(e: Envelope) -> RowChange:
    """What one status-changing event would write to its row."""
    status = STATUS_OF[e.type]
    data = e.data
    ended = (parse_time(data.get("endedAt")) or e.occurred_at) if status in TERMINAL else None
    return RowChange(
        job_id=e.job_id, status=status, attempt=e.attempt, rank=RANK[e.type],
        started_at=parse_time(data.get("startedAt")), ended_at=ended,
        result=data.get("result") if e.type is EventType.COMPLETED else None,
        error=_error(data) if e.type in (EventType.RETRY, EventType.FAILED) else None,
        next_run_at=parse_time(data.get("nextRunAt")) if e.type is EventType.RETRY else None,
        cancel_reason=str(data.get("reason") or "cancelled") if e.type is EventType.CANCELLED else None,
    )


def attempt_change(e: Envelope) -> AttemptChange:
    """What one attempt event would write to its job_attempts row."""
    data = e.data
    status = "running" if e.type is EventType.STARTED else ("completed" if e.type is EventType.COMPLETED else "failed")
    worker = data.get("workerId")
    ended = None if e.type is EventType.STARTED else (parse_time(data.get("endedAt")) or e.occurred_at)
    return AttemptChange(
        job_id=e.job_id, attempt=e.attempt, status=status, rank=RANK[e.type],
        worker_id=str(worker) if worker else None,
        started_at=parse_time(data.get("startedAt")), ended_at=ended, error=_error(data),
    )


def _fold_row(acc: RowChange | None, new: RowChange) -> RowChange:
    # Apply `new` after `acc` as the database would, one event at a time.
    if acc is None:
        return new
    if new.key <= acc.key:
        return acc
    error = None if new.status is JobStatus.COMPLETED else (new.error if new.error is not None else acc.error)
    return replace(new, started_at=new.started_at or acc.started_at, error=error)


def _fold_attempt(acc: AttemptChange | None, new: AttemptChange) -> AttemptChange:
    # The higher rank decides the outcome (ties: the first one wins, as in the table);
    # who ran it and when it started come from whichever event knew first.
    if acc is None:
        return new
    winner = new if new.rank > acc.rank else acc
    return replace(winner, worker_id=acc.worker_id or new.worker_id, started_at=acc.started_at or new.started_at)


def plan(envelopes: Sequence[Envelope]) -> Plan:
    """Collapse a batch: the highest (attempt, rank) event per row, merged as if applied in turn."""
    out = Plan(rows={}, attempts={}, cancelled_attempts={}, progress={})
    for e in envelopes:
        if e.type is EventType.PROGRESS:
            seen = out.progress.get(e.job_id)
            if seen is None or e.attempt >= seen[0]:
                out.progress[e.job_id] = (e.attempt, e.data.get("progress"))
            continue
        if e.type not in STATUS_OF:
            continue
        out.rows[e.job_id] = _fold_row(out.rows.get(e.job_id), row_change(e))
        if e.attempt < 1:
            continue
        key = (e.job_id, e.attempt)
        if e.type in ATTEMPT_EVENTS:
            out.attempts[key] = _fold_attempt(out.attempts.get(key), attempt_change(e))
        elif e.type is EventType.CANCELLED:
            out.cancelled_attempts.setdefault(key, e.occurred_at)
    return out


async def project(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> dict[uuid.UUID, JobStatus]:
    """Apply a batch of events inside the caller's transaction; returns the rows moved and their status."""
    p = plan(envelopes)
    moved: dict[uuid.UUID, JobStatus] = {}
    if p.rows:
        changes = sorted(p.rows.values(), key=lambda c: c.job_id)
        records = await conn.fetch(
            _UPDATE_ROWS,
            [c.job_id for c in changes], [c.status.value for c in changes],
            [c.attempt for c in changes], [c.rank for c in changes],
            [c.started_at for c in changes], [c.ended_at for c in changes],
            [c.result for c in changes], [c.error for c in changes],
            [c.next_run_at for c in changes], [c.cancel_reason for c in changes],
        )
        moved = {r["id"]: JobStatus(r["status"]) for r in records}
    if p.attempts:
        attempts = sorted(p.attempts.values(), key=lambda a: (a.job_id, a.attempt))
        await conn.execute(
            _UPSERT_ATTEMPTS,
            [a.job_id for a in attempts], [a.attempt for a in attempts], [a.worker_id for a in attempts],
            [a.status for a in attempts], [a.started_at for a in attempts], [a.ended_at for a in attempts],
            [a.error for a in attempts],
        )
    if p.cancelled_attempts:
        keys = sorted(p.cancelled_attempts)
        await conn.execute(
            _CANCEL_ATTEMPTS, [k[0] for k in keys], [k[1] for k in keys], [p.cancelled_attempts[k] for k in keys]
        )
    if p.progress:
        ids = sorted(p.progress)
        await conn.execute(
            _UPDATE_PROGRESS, ids, [p.progress[i][0] for i in ids], [p.progress[i][1] for i in ids]
        )
    return moved
