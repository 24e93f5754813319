"""Attempts whose worker was lost: expired leases (read from Redis) and vanished ones (reconciler).

Postgres first: the lost attempt is recorded (`retry` or `failed`, as a worker would have said)
and committed; only then does Redis move. The next attempt's push replaces the dead lease (the
attempt fence); any other dead lease is released only if it still is the lease that expired.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.scheduler import dependencies, metrics, projection, retries
from services.scheduler.rows import event, from_ms
from services.scheduler.store import jobs as store
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Dispatcher, now_ms
from shared.events import Envelope, EventType
from shared.logs import job_fields
from shared.models import TERMINAL, JobSpec

log = logging.getLogger(__name__)

LEASE_EXPIRED: dict[str, Any] = {
    "type": "lease_expired", "message": "worker lease expired (worker lost)", "retryable": True,
}
LEASE_LOST: dict[str, Any] = {
    "type": "lease_lost", "message": "worker lease lost (job neither leased nor held in Redis)", "retryable": True,
}
# Expired leases handled per check; more wait for the next one.
EXPIRED_LIMIT = 1000


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
    stale: list[LostAttempt] = field(default_factory=list)  # rows already past that attempt
    pushed: set[uuid.UUID] = field(default_factory=set)  # jobs whose next attempt is pushed


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
    """Emit and project retry/failed for lost attempts whose rows still expect them; queue the next attempts.

    Stale ones (the row already moved past that attempt) emit nothing, but a row left
    `retrying` still gets its next attempt pushed (an earlier push may have failed); exhausted
    ones cancel their blocked dependents.
    """
    out = Recorded()
    if not lost:
        return out
    states = await store.lock_states(conn, [x.spec.job_id for x in lost])
    emitted: list[Envelope] = []
    for item in lost:
        row = states.get(item.spec.job_id)
        if row is None or row.status in TERMINAL:
            out.gone.append(item)
            continue
        kind = EventType.FAILED if item.exhausted else EventType.RETRY
        if not projection.applies(row.status, row.state, item.spec.attempt, kind):
            out.stale.append(item)
            continue
        emitted.append(lost_event(item, error, row.started_at, at_ms))
        (out.failed if item.exhausted else out.retried).append(item)
        spec = item.spec
        log.info(
            "attempt lost with its worker (%s): %s", error["type"], kind.value,
            extra=job_fields(spec.job_id, queue=spec.queue, attempt=spec.attempt, traceparent=spec.trace_parent),
        )
    if emitted:
        await projection.project(conn, emitted)
        fx.events.extend(emitted)
    out.pushed = await retries.follow_retries(conn, [x.spec.job_id for x in out.retried + out.stale], fx, at_ms=at_ms)
    if out.failed:
        await dependencies.settle(conn, [x.spec.job_id for x in out.failed], fx, now_ms=at_ms)
    return out


class LeaseRequeuer:
    """Reads expired leases from Redis, records the lost attempts in Postgres, then moves Redis."""

    def __init__(self, committer: Committer, dispatcher: Dispatcher) -> None:
        self._committer = committer
        self._dispatcher = dispatcher

    async def tick(self) -> int:
        """One check; returns how many expired leases were handled."""
        expired = await self._dispatcher.expired(limit=EXPIRED_LIMIT)
        if not expired:
            return 0
        lost = [LostAttempt(x.spec, x.exhausted) for x in expired]
        async with self._committer.transaction("lease") as (conn, fx):
            done = await record_lost(conn, lost, LEASE_EXPIRED, fx, at_ms=now_ms())
            # A pushed next attempt replaces its dead lease; every other dead lease goes (only
            # if it still is that lease: a push or another replica may have moved it meanwhile).
            fx.releases.extend(x.lease for x in expired if x.spec.job_id not in done.pushed)
        metrics.LEASES_EXPIRED.labels("retry").inc(len(done.retried))
        metrics.LEASES_EXPIRED.labels("exhausted").inc(len(done.failed))
        log.info(
            "expired leases: %d retried, %d failed, %d already over, %d already recorded", len(done.retried),
            len(done.failed), len(done.gone), len(done.stale),
        )
        return len(expired)
