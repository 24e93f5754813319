"""Dependents of finished jobs: release them when every dependency completed, cancel them when one failed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

import asyncpg

from services.scheduler import dispatch
from services.scheduler.store import jobs as store
from services.scheduler.txn import Effects

log = logging.getLogger(__name__)

# A chain deeper than this is cut off; the reconciler continues it on its next pass.
MAX_DEPTH = 100


async def settle(
    conn: asyncpg.Connection, finished: Iterable[uuid.UUID], fx: Effects, *, now_ms: int
) -> dispatch.Applied:
    """Re-decide the blocked dependents of jobs that just finished, down the chain; returns what moved.

    `finished` is a hint: each dependent's dependencies are re-read, so a stale or
    duplicate hint changes nothing. Cancelled dependents become the next hint, which
    cancels their own dependents in turn.
    """
    frontier = set(finished)
    total: dispatch.Applied = {outcome: [] for outcome in dispatch.Outcome}
    for _ in range(MAX_DEPTH):
        if not frontier:
            return total
        rows = await store.lock_blocked_dependents(conn, sorted(frontier))
        if not rows:
            return total
        moved = await dispatch.dispatch_rows(conn, rows, fx, now_ms=now_ms)
        for outcome, ids in moved.items():
            total[outcome].extend(ids)
        frontier = set(moved[dispatch.Outcome.CANCELLED])
    log.warning("dependency chain deeper than %d; the reconciler will continue it", MAX_DEPTH)
    return total
