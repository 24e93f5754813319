"""Attempts whose worker was lost: expired leases (from Redis) and vanished ones (reconciler)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.scheduler import dependencies, metrics, projection
from services.scheduler.rows import event, from_ms
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Dispatcher, Expired, now_ms
from shared.events import Envelope, EventType
from shared.models import TERMINAL, JobSpec

log = logging.getLogger(__name__)

LEASE_EXPIRED: dict[str, Any] = {
    "type": "lease_expired", "message": "worker lease expired (worker lost)", "retryable": True,
}
LEASE_LOST: dict[str, Any] = {
    "type": "lease_lost", "message": "worker lease lost (job neither leased nor held in Redis)", "retryable": True,
}

_STATE = """
SELECT id, status, state_attempt, state_rank, started_at FROM jobs
WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""

# Expired leases kept in memory while Postgres is unreachable; Redis has already moved them.
MAX_UNSYNCED = 100_000


@dataclass(frozen=True, slots=True)
class LostAttempt:
    """One attempt that no worker holds any more; `spec.attempt` is the attempt lost."""

    spec: JobSpec
    exhausted: bool


@dataclass
class Recorded:
    """What happened to a set of lost attempts."""

    retried: list[LostAttempt] = field(default_factory=list)
    failed: list[LostAttempt] = field(default_factory=list)
    gone: list[LostAttempt] = field(default_factory=list)  # rows already terminal or missing


def lost_event(lost: LostAttempt, error: dict[str, Any], started_at: Any, at_ms: int) -> Envelope:
    """`retry` (attempts left) or `failed` (exhausted) for an attempt whose worker vanished."""
    spec = lost.spec
    now_iso = from_ms(at_ms).isoformat()
    data: dict[str, Any] = {
        "error": error, "workerId": None,
        "startedAt": started_at.isoformat() if started_at is not None else None, "endedAt": now_iso,
    }
    if lost.exhausted:
        data["reason"] = "exhausted"
        kind = EventType.FAILED
    else:
        data |= {"nextRunAt": now_iso, "delayMs": 0}
        kind = EventType.RETRY
    return event(
        kind, job_id=spec.job_id, tenant=spec.tenant, queue=spec.queue, job_type=spec.job_type,
        attempt=spec.attempt, data=data, trace_parent=spec.trace_parent,
    )


async def record_lost(
    conn: asyncpg.Connection, lost: Sequence[LostAttempt], error: dict[str, Any], fx: Effects, *, at_ms: int
) -> Recorded:
    """Emit and project retry/failed for lost attempts whose rows still expect them.

    Stale ones (the row already moved past that attempt) emit nothing; exhausted ones
    cancel their blocked dependents.
    """
    out = Recorded()
    if not lost:
        return out
    rows = {r["id"]: r for r in await conn.fetch(_STATE, sorted({x.spec.job_id for x in lost}))}
    emitted: list[Envelope] = []
    for item in lost:
        row = rows.get(item.spec.job_id)
        if row is None or row["status"] in TERMINAL:
            out.gone.append(item)
            continue
        kind = EventType.FAILED if item.exhausted else EventType.RETRY
        if not projection.applies(row["status"], (row["state_attempt"], row["state_rank"]), item.spec.attempt, kind):
            continue
        emitted.append(lost_event(item, error, row["started_at"], at_ms))
        (out.failed if item.exhausted else out.retried).append(item)
    if emitted:
        await projection.project(conn, emitted)
        fx.events.extend(emitted)
    if out.failed:
        await dependencies.settle(conn, [x.spec.job_id for x in out.failed], fx, now_ms=at_ms)
    return out


class LeaseRequeuer:
    """Takes back expired leases from Redis and records the lost attempts in Postgres."""

    def __init__(self, committer: Committer, dispatcher: Dispatcher) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._unsynced: list[Expired] = []

    async def tick(self) -> int:
        """One check; returns how many expired leases were handled."""
        batch = self._unsynced + await self._dispatcher.requeue_expired()
        if len(batch) > MAX_UNSYNCED:
            log.error("dropping %d expired leases Postgres never recorded", len(batch) - MAX_UNSYNCED)
            batch = batch[-MAX_UNSYNCED:]
        self._unsynced = batch  # until Postgres has them: Redis already moved these jobs
        if not batch:
            return 0
        lost = [LostAttempt(x.spec, x.outcome == "exhausted") for x in batch]
        async with self._committer.transaction("lease") as (conn, fx):
            done = await record_lost(conn, lost, LEASE_EXPIRED, fx, at_ms=now_ms())
            # Redis already queued the next attempt of these; their rows say they are over.
            fx.forget.extend(x.spec.job_id for x in done.gone if not x.exhausted)
        self._unsynced = []
        for x in batch:
            metrics.LEASES_EXPIRED.labels(x.outcome).inc()
        log.info(
            "expired leases: %d retried, %d failed, %d already over", len(done.retried), len(done.failed),
            len(done.gone),
        )
        return len(batch)


