"""The next attempt of a job Postgres has just recorded as `retrying`, pushed after the commit.

Postgres before Redis: the row says `retrying` (a worker's `retry` event, or an attempt whose
worker was lost) before Redis holds the next attempt. A crash between the two leaves a retrying
row Redis lacks, which the reconciler dispatches again. The push is attempt-fenced, so it does
not matter whether the worker's release of the old lease reaches Redis before it or after.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import asyncpg

from services.scheduler import dependencies, projection
from services.scheduler.rows import cancelled_event, due_at, spec_for
from services.scheduler.store import jobs as store
from services.scheduler.txn import Effects
from shared.logs import job_fields
from shared.models import JobStatus

log = logging.getLogger(__name__)

CANCELLED_BY_USER = "cancelled_by_user"


async def follow_retries(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], fx: Effects, *, at_ms: int
) -> set[uuid.UUID]:
    """Queue the push of the next attempt of each row among these that is `retrying`; returns those ids.

    A row whose cancel was requested while it ran is cancelled instead: the attempt that could
    have stopped is over, and a flagged copy would only be dropped when met.
    """
    rows = await store.lock_rows(conn, sorted(set(job_ids)), (JobStatus.RETRYING.value,))
    pushed: set[uuid.UUID] = set()
    cancelled = []
    for row in rows:
        if row.cancel_requested:
            cancelled.append(cancelled_event(row, row.state_attempt, CANCELLED_BY_USER))
            log.info(
                "cancel requested while running: cancelled instead of retried",
                extra=job_fields(row.id, queue=row.queue, attempt=row.state_attempt, traceparent=row.trace_parent),
            )
        else:
            fx.pushes.append((spec_for(row, row.next_attempt), due_at(row, at_ms)))
            pushed.add(row.id)
    if cancelled:
        await projection.project(conn, cancelled)
        fx.events.extend(cancelled)
        await dependencies.settle(conn, [e.job_id for e in cancelled], fx, now_ms=at_ms)
    return pushed
