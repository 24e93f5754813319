"""Projection of worker (and cancellation) events onto job rows and attempt rows: batched, idempotent.

A row records the (attempt, rank) of the last event applied to it; an event applies only
when its own (attempt, rank) is higher, so redeliveries and stale events change nothing.
Terminal rows accept nothing (a manual retry resets the row in the API).

Fencing: an attempt row remembers the event that ended it (`outcome_event`). Another event
ending the same attempt is a late result (its worker lost the lease: the attempt was recorded as
lost meanwhile); it is never applied, only recorded as the attempt's `late_result`. A worker that
knows its lease is gone reports its result that way itself (`progress` data `lateResult`).

`progress` events also carry the handler's log lines (kept on the job, the newest 200) and its
checkpoint (the next attempt's `checkpointState`); `retry`, `completed` and `failed` carry the
attempt's last checkpoint too, since Kafka does not order the topics.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg

from services.scheduler.rows import parse_time
from services.scheduler.store import projection as store
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


def applies(status: str, state: tuple[int, int], attempt: int, kind: EventType) -> bool:
    """The rank rule: does an event of `kind` for `attempt` move a row at `state`?"""
    if status in TERMINAL:
        return False
    if kind is EventType.PROGRESS:
        return (attempt, RANK[kind]) >= state
    return (attempt, RANK[kind]) > state


class _NoCheckpoint:
    """The event carried no checkpoint (None is one: it clears it)."""


NO_CHECKPOINT: Any = _NoCheckpoint()
# Outcome events that may carry the attempt's last checkpoint.
CARRY_CHECKPOINT: frozenset[EventType] = frozenset({EventType.RETRY, EventType.COMPLETED, EventType.FAILED})


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
    checkpoint: Any = NO_CHECKPOINT

    @property
    def has_checkpoint(self) -> bool:
        """The event set the job's checkpoint."""
        return not isinstance(self.checkpoint, _NoCheckpoint)

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
    outcome_event: uuid.UUID | None = None  # the event that ended it (None: `started`)


@dataclass(frozen=True, slots=True)
class Ending:
    """An event that ends an attempt, with the late-result record it becomes if another ended it first."""

    job_id: uuid.UUID
    attempt: int
    event_id: uuid.UUID
    late: dict[str, Any]


@dataclass
class Plan:
    """A batch of events collapsed to one change per row."""

    rows: dict[uuid.UUID, RowChange]
    attempts: dict[tuple[uuid.UUID, int], AttemptChange]
    cancelled_attempts: dict[tuple[uuid.UUID, int], tuple[datetime, uuid.UUID]]
    progress: dict[uuid.UUID, tuple[int, Any]]
    endings: list[Ending] = field(default_factory=list)
    late_reports: dict[tuple[uuid.UUID, int], Any] = field(default_factory=dict)
    logs: dict[uuid.UUID, list[Any]] = field(default_factory=dict)
    checkpoints: dict[uuid.UUID, tuple[int, Any]] = field(default_factory=dict)


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
        checkpoint=data["checkpoint"] if e.type in CARRY_CHECKPOINT and "checkpoint" in data else NO_CHECKPOINT,
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
        outcome_event=None if e.type is EventType.STARTED else e.event_id,
    )


def ending(e: Envelope) -> Ending:
    """The late-result record of an attempt-ending event, should the attempt have ended otherwise first."""
    data = e.data
    late: dict[str, Any] = {
        "outcome": e.type.value, "at": (parse_time(data.get("endedAt")) or e.occurred_at).isoformat(),
        "workerId": data.get("workerId"), "rejected": True, "reason": "attempt_already_ended",
    }
    if (err := _error(data)) is not None:
        late["error"] = err
    return Ending(e.job_id, e.attempt, e.event_id, late)


def _fold_row(acc: RowChange | None, new: RowChange) -> RowChange:
    # Apply `new` after `acc` as the database would, one event at a time.
    if acc is None:
        return new
    if new.key <= acc.key:
        return acc
    error = None if new.status is JobStatus.COMPLETED else (new.error if new.error is not None else acc.error)
    checkpoint = new.checkpoint if new.has_checkpoint else acc.checkpoint
    return replace(new, started_at=new.started_at or acc.started_at, error=error, checkpoint=checkpoint)


def _fold_attempt(acc: AttemptChange | None, new: AttemptChange) -> AttemptChange:
    # The higher rank decides the outcome (ties: the first one wins, as in the table);
    # who ran it and when it started come from whichever event knew first.
    if acc is None:
        return new
    winner = new if new.rank > acc.rank else acc
    return replace(winner, worker_id=acc.worker_id or new.worker_id, started_at=acc.started_at or new.started_at)


def _plan_report(out: Plan, e: Envelope) -> None:
    # A `progress` event: any of progress, log lines, a checkpoint, a late result.
    data = e.data
    if "progress" in data:
        seen = out.progress.get(e.job_id)
        if seen is None or e.attempt >= seen[0]:
            out.progress[e.job_id] = (e.attempt, data["progress"])
    lines = data.get("logs")
    if isinstance(lines, list) and lines:
        kept = out.logs.setdefault(e.job_id, [])
        kept.extend({**line, "attempt": e.attempt} for line in lines if isinstance(line, dict))
        del kept[:-store.MAX_LOG_LINES]
    if "checkpoint" in data:
        seen = out.checkpoints.get(e.job_id)
        if seen is None or e.attempt >= seen[0]:
            out.checkpoints[e.job_id] = (e.attempt, data["checkpoint"])
    late = data.get("lateResult")
    if isinstance(late, dict) and e.attempt >= 1:
        out.late_reports.setdefault((e.job_id, e.attempt), late)


def plan(envelopes: Sequence[Envelope]) -> Plan:
    """Collapse a batch: the highest (attempt, rank) event per row, merged as if applied in turn."""
    out = Plan(rows={}, attempts={}, cancelled_attempts={}, progress={})
    for e in envelopes:
        if e.type is EventType.PROGRESS:
            _plan_report(out, e)
            continue
        if e.type not in STATUS_OF:
            continue
        out.rows[e.job_id] = _fold_row(out.rows.get(e.job_id), row_change(e))
        if e.attempt < 1:
            continue
        key = (e.job_id, e.attempt)
        if e.type in ATTEMPT_EVENTS:
            out.attempts[key] = _fold_attempt(out.attempts.get(key), attempt_change(e))
            if e.type is not EventType.STARTED:
                out.endings.append(ending(e))
        elif e.type is EventType.CANCELLED:
            out.cancelled_attempts.setdefault(key, (e.occurred_at, e.event_id))
    return out


async def project(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> dict[uuid.UUID, JobStatus]:
    """Apply a batch of events inside the caller's transaction; returns the rows moved and their status."""
    p = plan(envelopes)
    moved: dict[uuid.UUID, JobStatus] = {}
    if p.rows:
        moved = await store.update_rows(conn, sorted(p.rows.values(), key=lambda c: c.job_id))
    if p.attempts:
        await store.upsert_attempts(conn, sorted(p.attempts.values(), key=lambda a: (a.job_id, a.attempt)))
    if p.cancelled_attempts:
        await store.cancel_attempts(conn, [(*key, *p.cancelled_attempts[key]) for key in sorted(p.cancelled_attempts)])
    if p.endings:
        # After the attempt rows were written: an ending that did not end its attempt is late.
        await store.record_late_endings(conn, sorted(p.endings, key=lambda x: (x.job_id, x.attempt)))
    if p.late_reports:
        await store.record_late_reports(conn, [(*key, p.late_reports[key]) for key in sorted(p.late_reports)])
    if p.progress:
        await store.update_progress(conn, [(job_id, *p.progress[job_id]) for job_id in sorted(p.progress)])
    if p.checkpoints:
        await store.update_checkpoints(conn, [(job_id, *p.checkpoints[job_id]) for job_id in sorted(p.checkpoints)])
    if p.logs:
        await store.append_logs(conn, [(job_id, p.logs[job_id]) for job_id in sorted(p.logs)])
    return moved
