"""Promotion of due delayed jobs (scheduled runs, retries) into their ready sets, and its row changes.

The one Redis-first move of the scheduler: Redis promotes, then the transaction records the
attempt as `queued` with its `dispatched` event. A worker may pop the job in between; its
`started` still applies, being of the same attempt and a higher rank.
"""

from __future__ import annotations

import logging

from services.scheduler.rows import event
from services.scheduler.store import jobs as store
from services.scheduler.txn import Committer
from shared.dispatch.protocol import Dispatcher, Forget
from shared.events import EventType
from shared.models import JobSpec

log = logging.getLogger(__name__)

PROMOTE_LIMIT = 1000
MAX_UNSYNCED = 100_000


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
            promoted = await store.promote(conn, ids, [by_id[i].attempt for i in ids])
            for row in promoted:
                spec = by_id[row.id]
                fx.events.append(event(
                    EventType.DISPATCHED, job_id=row.id, tenant=row.tenant, queue=row.queue,
                    job_type=row.job_type, attempt=spec.attempt, data={"priority": row.priority},
                    trace_parent=spec.trace_parent,
                ))
            unmatched = sorted(set(ids) - {row.id for row in promoted})
            if unmatched:
                live = await store.live_ids(conn, unmatched)
                # A job whose row is over (or gone) must not run again.
                fx.forget.extend(
                    Forget(by_id[i].queue, i, by_id[i].attempt) for i in unmatched if i not in live
                )
        self._unsynced = []
        return len(fresh)
