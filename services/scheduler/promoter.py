"""Promotion of due delayed jobs (scheduled runs, retries) into their ready sets, and its row changes."""

from __future__ import annotations

import logging

from services.scheduler.rows import TERMINAL_SQL, event
from services.scheduler.txn import Committer
from shared.dispatch.protocol import Dispatcher
from shared.events import RANK, EventType
from shared.models import JobSpec

log = logging.getLogger(__name__)

PROMOTE_LIMIT = 1000
MAX_UNSYNCED = 100_000

# Rows still waiting for this attempt become queued; a row already past it (or terminal)
# is left alone. `running` is accepted: a retry's promotion may overtake its retry event.
_PROMOTE = f"""
UPDATE jobs SET
    status = 'queued', state_attempt = u.attempt, state_rank = {RANK[EventType.DISPATCHED]},
    next_run_at = NULL, progress = NULL, updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS u(id, attempt)
WHERE jobs.id = u.id
  AND jobs.status IN ('scheduled', 'retrying', 'queued', 'running')
  AND (jobs.state_attempt, jobs.state_rank) < (u.attempt, {RANK[EventType.DISPATCHED]})
RETURNING jobs.id, jobs.tenant, jobs.queue, jobs.job_type, jobs.priority
"""
_LIVE = f"SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND status NOT IN {TERMINAL_SQL}"


class Promoter:
    """Moves due delayed jobs to ready and records them as queued with a `dispatched` event."""

    def __init__(self, committer: Committer, dispatcher: Dispatcher) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._unsynced: list[JobSpec] = []

    async def tick(self) -> int:
        """Promote one batch; returns how many jobs Redis moved (the caller loops while it is full)."""
        fresh = await self._dispatcher.promote_due(limit=PROMOTE_LIMIT)
        batch = self._unsynced + fresh
        if len(batch) > MAX_UNSYNCED:
            log.error("dropping %d promotions Postgres never recorded", len(batch) - MAX_UNSYNCED)
            batch = batch[-MAX_UNSYNCED:]
        self._unsynced = batch  # Redis already moved these: keep them until Postgres has them
        if not batch:
            return 0
        by_id = {spec.job_id: spec for spec in batch}  # the latest promotion of a job wins
        ids = sorted(by_id)
        async with self._committer.transaction("promoted") as (conn, fx):
            rows = await conn.fetch(_PROMOTE, ids, [by_id[i].attempt for i in ids])
            for r in rows:
                spec = by_id[r["id"]]
                fx.events.append(event(
                    EventType.DISPATCHED, job_id=r["id"], tenant=r["tenant"], queue=r["queue"],
                    job_type=r["job_type"], attempt=spec.attempt, data={"priority": r["priority"]},
                    trace_parent=spec.trace_parent,
                ))
            promoted = {r["id"] for r in rows}
            unmatched = [i for i in ids if i not in promoted]
            if unmatched:
                live = {r["id"] for r in await conn.fetch(_LIVE, unmatched)}
                # A job whose row is over (or gone) must not run again.
                fx.forget.extend(i for i in unmatched if i not in live)
        self._unsynced = []
        return len(fresh)
