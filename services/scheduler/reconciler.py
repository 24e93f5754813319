"""Reconciliation: Postgres is the truth; re-dispatch what Redis lost and requeue vanished leases.

One replica at a time (an advisory lock for the pass). A row absent from Redis is acted
on only when a second pass finds it still absent and unchanged: a worker may have released
a job whose events the consumer has not projected yet, and acting then would run it twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg

from services.scheduler import dependencies, dispatch, metrics, retries
from services.scheduler.consumer import ConsumerLag
from services.scheduler.leases import LEASE_LOST, LostAttempt, record_lost
from services.scheduler.queue_mirror import sync_queues
from services.scheduler.rows import JobRow, due_at, spec_for
from services.scheduler.store import jobs as store
from services.scheduler.store import reconcile as pages
from services.scheduler.store.reconcile import Version
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Dispatcher, JobRef, now_ms
from shared.events import RANK, EventType
from shared.models import JobStatus

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0
WAITING_IN_REDIS = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING)


def waiting_attempt(row: JobRow) -> int:
    """The attempt a waiting row's lost copy is handed out at again.

    A queued row records the attempt it dispatched, and no worker started it (a `started` would
    have made the row running): the copy goes back at that same number, so a loss of Redis data
    never uses up an attempt. Anything else takes the number its first dispatch would have.
    """
    dispatched = row.state_rank == RANK[EventType.DISPATCHED]
    if row.status is JobStatus.QUEUED and dispatched and row.state_attempt > row.attempts:
        return row.state_attempt
    return row.next_attempt


class Reconciler:
    """Periodic passes over live rows, page by page."""

    def __init__(
        self,
        committer: Committer,
        dispatcher: Dispatcher,
        *,
        grace_s: float,
        lag: ConsumerLag,
        lag_window_s: float,
        stop: asyncio.Event,
    ) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._grace = grace_s
        self._lag = lag
        self._lag_window = lag_window_s
        self._stop = stop
        self._suspects: dict[uuid.UUID, datetime] = {}  # absent from Redis last pass, with updated_at
        self.passes = 0  # completed passes (for health and tests)

    @property
    def holding_back(self) -> bool:
        """Whether the consumer lags enough that a pass now would not compare Redis with Postgres."""
        return self._lag.behind(self._grace, self._lag_window)

    async def tick(self) -> bool:
        """The periodic-loop entry: one pass (never asks to run again at once)."""
        await self.run_pass()
        return False

    async def run_pass(self) -> Counter[str] | None:
        """One pass; None when another replica holds the lock. Returns what was repaired, by kind."""
        async with self._committer.pool.acquire(timeout=LOCK_TIMEOUT_S) as lock_conn:
            if not await pages.try_lock(lock_conn):
                return None
            try:
                counts = await self._pass(lock_conn)
            finally:
                await pages.unlock(lock_conn)
        self.passes += 1
        for kind, n in counts.items():
            metrics.RECONCILED.labels(kind).inc(n)
        if counts:
            log.info("reconciled %s", dict(counts))
        return counts

    async def _pass(self, conn: asyncpg.Connection) -> Counter[str]:
        counts: Counter[str] = Counter()
        if mirrored := await sync_queues(conn, self._dispatcher, grace_s=self._grace):
            counts["queue_config"] += mirrored
        cutoff = await pages.cutoff(conn, self._grace)
        for status in (JobStatus.PENDING, JobStatus.BLOCKED):
            async for page in self._pages(conn, status, cutoff):
                await self._redecide(page, status, cutoff, counts)
        if self.holding_back:
            log.warning("consumer is %.1fs behind; not comparing Redis with Postgres this pass", self._lag.seconds)
            self._suspects = {}
            return counts
        suspects: dict[uuid.UUID, datetime] = {}
        for status in (*WAITING_IN_REDIS, JobStatus.RUNNING):
            async for page in self._pages(conn, status, cutoff):
                confirmed = await self._absent(page, status, suspects)
                if confirmed:
                    await self._repair(confirmed, status, cutoff, counts)
        self._suspects = suspects
        return counts

    async def _pages(
        self, conn: asyncpg.Connection, status: JobStatus, cutoff: datetime
    ) -> AsyncIterator[list[Version]]:
        found = await pages.page(conn, status, cutoff)
        while found and not self._stop.is_set():
            yield found
            if len(found) < pages.PAGE:
                return
            found = await pages.page(conn, status, cutoff, after=found[-1])

    async def _redecide(
        self, page: Sequence[Version], status: JobStatus, cutoff: datetime, counts: Counter[str]
    ) -> None:
        # Pending rows whose submission never arrived, blocked rows whose release was missed.
        at = now_ms()
        async with self._committer.transaction("reconciled") as (conn, fx):
            rows = await store.lock_rows(conn, [v.id for v in page], (status.value,), unchanged_since=cutoff)
            moved = await dispatch.dispatch_rows(conn, rows, fx, now_ms=at)
            cascade = await dependencies.settle(conn, moved[dispatch.Outcome.CANCELLED], fx, now_ms=at)
        if status is JobStatus.PENDING:
            counts["pending"] += sum(len(ids) for ids in moved.values())
        else:
            counts["blocked_released"] += len(moved[dispatch.Outcome.QUEUED]) + len(moved[dispatch.Outcome.SCHEDULED])
            counts["blocked_cancelled"] += len(moved[dispatch.Outcome.CANCELLED])
        counts["dependency_cancelled"] += len(cascade[dispatch.Outcome.CANCELLED])

    async def _absent(
        self, page: Sequence[Version], status: JobStatus, suspects: dict[uuid.UUID, datetime]
    ) -> list[Version]:
        """Rows Redis lacks; returns those already absent and unchanged on the previous pass."""
        refs = [JobRef(v.queue, v.id) for v in page]
        present = await self._dispatcher.held(refs)
        if status is JobStatus.RUNNING:
            present |= await self._dispatcher.leased(refs)
        confirmed = []
        for version in page:
            if version.id in present:
                continue
            if self._suspects.get(version.id) == version.updated_at:
                confirmed.append(version)
            else:
                suspects[version.id] = version.updated_at
        return confirmed

    async def _repair(
        self, seen: Sequence[Version], status: JobStatus, cutoff: datetime, counts: Counter[str]
    ) -> None:
        at = now_ms()
        expected = {v.id: v.updated_at for v in seen}
        async with self._committer.transaction("reconciled") as (conn, fx):
            rows = await store.lock_rows(conn, list(expected), (status.value,), unchanged_since=cutoff)
            rows = [r for r in rows if expected.get(r.id) == r.updated_at]
            if status is JobStatus.RUNNING:
                repaired = await self._requeue_lost(conn, rows, fx, at)
            elif status is JobStatus.RETRYING:
                await retries.follow_retries(conn, [r.id for r in rows], fx, at_ms=at)
                repaired = len(rows)
            else:
                fx.pushes.extend((spec_for(r, waiting_attempt(r)), due_at(r, at)) for r in rows)
                repaired = len(rows)
        counts["running_lost" if status is JobStatus.RUNNING else status.value] += repaired

    async def _requeue_lost(self, conn: asyncpg.Connection, rows: Sequence[JobRow], fx: Effects, at: int) -> int:
        # The worker vanished and so did its lease: record the attempt as lost, queue the next.
        lost = []
        for row in rows:
            attempt = max(row.state_attempt, row.attempts, 1)
            lost.append(LostAttempt(spec_for(row, attempt), exhausted=attempt >= row.max_attempts))
        done = await record_lost(conn, lost, LEASE_LOST, fx, at_ms=at)
        return len(done.retried) + len(done.failed)
