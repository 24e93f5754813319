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

from services.scheduler import dead_letters, dependencies, metrics, projection, retries
from services.scheduler.consumer import ConsumerLag
from services.scheduler.rows import event, from_ms
from services.scheduler.store import jobs as store
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Dispatcher, Expired, now_ms
from shared.events import RANK, Envelope, EventType
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
# A lease lives seconds; a consumer less behind than this has projected the `started` of any
# attempt whose lease expired, so a row still below `started` means the attempt never ran.
LAG_TRUSTED_S = 2.0
LAG_WINDOW_S = 30.0


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
        moved = await projection.project(conn, emitted)
        fx.events.extend(emitted)
        fx.messages.extend(dead_letters.alerts(emitted, moved))
    out.pushed = await retries.follow_retries(conn, [x.spec.job_id for x in out.retried + out.stale], fx, at_ms=at_ms)
    if out.failed:
        await dependencies.settle(conn, [x.spec.job_id for x in out.failed], fx, now_ms=at_ms)
    return out


def never_started(row: store.RowState | None, attempt: int) -> bool:
    """Postgres holds no sign that this attempt started: the row, live, is below its `started`."""
    return row is not None and row.status not in TERMINAL and row.state < (attempt, RANK[EventType.STARTED])


class LeaseRequeuer:
    """Reads expired leases from Redis, records the lost attempts in Postgres, then moves Redis.

    Only an attempt that started counts: a lease that expired before its worker's `started` was
    acknowledged (a worker killed right after its pop) is handed out again at the same attempt,
    after a release fenced by its token, so the dead worker can neither heartbeat nor release it.
    While the consumer lags, a `started` may still be on its way: every lost lease then counts.
    """

    def __init__(self, committer: Committer, dispatcher: Dispatcher, lag: ConsumerLag | None = None) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._lag = lag

    async def tick(self) -> int:
        """One check; returns how many expired leases were handled."""
        expired = await self._dispatcher.expired(limit=EXPIRED_LIMIT)
        if not expired:
            return 0
        trusted = self._lag is None or not self._lag.behind(LAG_TRUSTED_S, LAG_WINDOW_S)
        async with self._committer.transaction("lease") as (conn, fx):
            states = await store.lock_states(conn, [x.spec.job_id for x in expired])
            unstarted = [x for x in expired if trusted and never_started(states.get(x.spec.job_id), x.spec.attempt)]
            skip = {x.spec.job_id for x in unstarted}
            started = [x for x in expired if x.spec.job_id not in skip]
            lost = [LostAttempt(x.spec, x.exhausted) for x in started]
            done = await record_lost(conn, lost, LEASE_EXPIRED, fx, at_ms=now_ms())
            # A pushed next attempt replaces its dead lease; every other dead lease goes (only
            # if it still is that lease: a push or another replica may have moved it meanwhile).
            fx.releases.extend(x.lease for x in started if x.spec.job_id not in done.pushed)
        requeued = await self._requeue(unstarted)
        metrics.LEASES_EXPIRED.labels("retry").inc(len(done.retried))
        metrics.LEASES_EXPIRED.labels("exhausted").inc(len(done.failed))
        metrics.LEASES_EXPIRED.labels("unstarted").inc(requeued)
        log.info(
            "expired leases: %d retried, %d failed, %d already over, %d already recorded, %d never started",
            len(done.retried), len(done.failed), len(done.gone), len(done.stale), requeued,
        )
        return len(expired)

    async def _requeue(self, unstarted: Sequence[Expired]) -> int:
        """Hand out again, at the same attempt, the copies whose dead lease is still theirs to release."""
        if not unstarted:
            return 0
        released = await self._dispatcher.release_each([x.lease for x in unstarted])
        # A lease no longer owned was released by a worker that did run the job: not pushed again.
        again = [(x.spec, 0) for x, ok in zip(unstarted, released, strict=True) if ok]
        await self._committer.redis.push(again)
        for x, _ in again:
            log.info(
                "lease expired before the attempt started: handed out again at the same attempt",
                extra=job_fields(x.job_id, queue=x.queue, attempt=x.attempt, traceparent=x.trace_parent),
            )
        return len(again)
