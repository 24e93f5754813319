"""Reconciliation: Postgres is the truth; re-dispatch what Redis lost and requeue vanished leases.

One replica at a time (an advisory lock for the pass). A row absent from Redis is acted
on only when a second pass finds it still absent and unchanged: a worker may have acked
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

from services.scheduler import dependencies, dispatch, metrics
from services.scheduler.consumer import ConsumerLag
from services.scheduler.leases import LEASE_LOST, LostAttempt, record_lost
from services.scheduler.rows import JobRow, spec_for, to_ms
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Dispatcher, now_ms
from shared.models import JobStatus

log = logging.getLogger(__name__)

PAGE = 1000
# Any constant works; every scheduler replica must agree on it.
LOCK_KEY = 0x5C4ED_0EC0

_CUTOFF = "SELECT now() - make_interval(secs => $1::float8)"
_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"


# Blocked rows worth re-deciding: every dependency completed, or one failed, was cancelled or
# does not exist. Rows still waiting on live dependencies are skipped in SQL.
_BLOCKED_CANDIDATE = """
  AND NOT EXISTS (
    SELECT 1 FROM (
        SELECT count(*) AS present,
               count(*) FILTER (WHERE d.status = 'completed') AS done,
               count(*) FILTER (WHERE d.status IN ('failed', 'cancelled')) AS dead
        FROM jobs d WHERE d.id = ANY(j.depends_on)
    ) s
    WHERE s.dead = 0 AND s.done < s.present
      AND s.present = (SELECT count(DISTINCT x) FROM unnest(j.depends_on) AS x)
  )"""


def _page_sql(status: JobStatus) -> tuple[str, str]:
    # Only ids and versions: rows are re-read (whole, locked) for the few that need repair.
    # The status is a literal so the planner can use the partial index jobs_live.
    base = f"SELECT j.id, j.updated_at FROM jobs j WHERE j.status = '{status.value}' AND j.updated_at < $1"
    if status is JobStatus.BLOCKED:
        base += _BLOCKED_CANDIDATE
    first = f"{base} ORDER BY j.updated_at, j.id LIMIT {PAGE}"
    after = f"{base} AND (j.updated_at, j.id) > ($2, $3) ORDER BY j.updated_at, j.id LIMIT {PAGE}"
    return first, after


_PAGES = {status: _page_sql(status) for status in JobStatus}
WAITING_IN_REDIS = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING)
# A row as the pages see it: its id and version (updated_at).
Version = tuple[uuid.UUID, datetime]


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

    async def tick(self) -> bool:
        """The periodic-loop entry: one pass (never asks to run again at once)."""
        await self.run_pass()
        return False

    async def run_pass(self) -> Counter[str] | None:
        """One pass; None when another replica holds the lock. Returns what was repaired, by kind."""
        async with self._committer.pool.acquire(timeout=10) as lock_conn:
            if not await lock_conn.fetchval(_LOCK, LOCK_KEY):
                return None
            try:
                counts = await self._pass(lock_conn)
            finally:
                await lock_conn.execute(_UNLOCK, LOCK_KEY)
        self.passes += 1
        for kind, n in counts.items():
            metrics.RECONCILED.labels(kind).inc(n)
        if counts:
            log.info("reconciled %s", dict(counts))
        return counts

    async def _pass(self, conn: asyncpg.Connection) -> Counter[str]:
        counts: Counter[str] = Counter()
        cutoff: datetime = await conn.fetchval(_CUTOFF, self._grace)
        for status in (JobStatus.PENDING, JobStatus.BLOCKED):
            async for page in self._pages(conn, status, cutoff):
                await self._redecide(page, status, cutoff, counts)
        if self._lag.behind(self._grace, self._lag_window):
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
        first, after = _PAGES[status]
        records = await conn.fetch(first, cutoff)
        while records and not self._stop.is_set():
            yield [(r["id"], r["updated_at"]) for r in records]
            if len(records) < PAGE:
                return
            last = records[-1]
            records = await conn.fetch(after, cutoff, last["updated_at"], last["id"])

    async def _redecide(
        self, page: Sequence[Version], status: JobStatus, cutoff: datetime, counts: Counter[str]
    ) -> None:
        # Pending rows whose submission never arrived, blocked rows whose release was missed.
        at = now_ms()
        async with self._committer.transaction("reconciled") as (conn, fx):
            rows = await dispatch.load(conn, [job_id for job_id, _ in page], (status.value,), unchanged_since=cutoff)
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
        ids = [job_id for job_id, _ in page]
        present = await self._dispatcher.held(ids)
        if status is JobStatus.RUNNING:
            present |= await self._dispatcher.leased(ids)
        confirmed = []
        for job_id, version in page:
            if job_id in present:
                continue
            if self._suspects.get(job_id) == version:
                confirmed.append((job_id, version))
            else:
                suspects[job_id] = version
        return confirmed

    async def _repair(
        self, seen: Sequence[Version], status: JobStatus, cutoff: datetime, counts: Counter[str]
    ) -> None:
        at = now_ms()
        expected = dict(seen)
        async with self._committer.transaction("reconciled") as (conn, fx):
            rows = await dispatch.load(conn, list(expected), (status.value,), unchanged_since=cutoff)
            rows = [r for r in rows if expected.get(r.id) == r.updated_at]
            if status is JobStatus.RUNNING:
                repaired = await self._requeue_lost(conn, rows, fx, at)
            else:
                fx.pushes.extend((spec_for(r, r.next_attempt), _run_at(r, at)) for r in rows)
                repaired = len(rows)
        counts["running_lost" if status is JobStatus.RUNNING else status.value] += repaired

    async def _requeue_lost(self, conn: asyncpg.Connection, rows: Sequence[JobRow], fx: Effects, at: int) -> int:
        # The worker vanished and so did its lease: record the attempt as lost, queue the next.
        lost = []
        for row in rows:
            attempt = max(row.state_attempt, row.attempts, 1)
            lost.append(LostAttempt(spec_for(row, attempt), exhausted=attempt >= row.max_attempts))
        done = await record_lost(conn, lost, LEASE_LOST, fx, at_ms=at)
        by_id = {r.id: r for r in rows}
        for item in done.retried:
            row = by_id[item.spec.job_id]
            fx.pushes.append((spec_for(row, item.spec.attempt + 1), at))
        return len(done.retried) + len(done.failed)


def _run_at(row: JobRow, at_ms: int) -> int:
    """When a re-dispatched waiting row is due; everything goes through the delayed set and the
    promoter, which records the attempt as queued with its `dispatched` event."""
    if row.status is JobStatus.SCHEDULED and row.scheduled_for is not None:
        return max(to_ms(row.scheduled_for), 1)
    if row.status is JobStatus.RETRYING and row.next_run_at is not None:
        return max(to_ms(row.next_run_at), at_ms)
    return at_ms
