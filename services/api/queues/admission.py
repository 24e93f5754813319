"""`maxLength` at submission: a full queue answers 429 with `Retry-After`, and nothing is stored.

Exact under concurrent submissions: inside the submission's transaction, a per-queue advisory lock
(transaction-scoped, taken only for queues with a maxLength) makes each submission count a backlog
that includes every one committed before it. Retry-After comes from the queue's measured drain rate.
"""

from __future__ import annotations

import math

import asyncpg

from services.api.http.problems import ApiError
from services.api.store import queues as store

# Nothing started lately (a paused queue, no worker): no rate to go by, so a guess that keeps
# clients from hammering without making them wait long once work resumes.
FALLBACK_RETRY_AFTER_S = 30
MAX_RETRY_AFTER_S = 3600


class QueueFull(ApiError):
    """The queue's backlog is at its maxLength."""

    status, slug, title = 429, "queue-full", "Queue full"


def retry_after_s(excess: int, drain_per_s: float | None) -> int:
    """Whole seconds until `excess` jobs have drained at `drain_per_s` (1..MAX_RETRY_AFTER_S)."""
    if not drain_per_s or drain_per_s <= 0:
        return FALLBACK_RETRY_AFTER_S
    return min(max(math.ceil(excess / drain_per_s), 1), MAX_RETRY_AFTER_S)


async def check_room(conn: asyncpg.Connection, queue: str, max_length: int, adding: int) -> QueueFull | None:
    """Lock the queue's admission for this transaction and count its backlog; the 429 to raise if full."""
    await store.lock_for_admission(conn, queue)
    backlog = await store.backlog(conn, queue, max_length)
    if backlog + adding <= max_length:
        return None
    wait_s = retry_after_s(backlog + adding - max_length, await store.drain_rate(conn, queue))
    return QueueFull(
        f"queue {queue!r} is full: its backlog is at its maxLength of {max_length}; retry in {wait_s} s",
        headers={"Retry-After": str(wait_s)},
    )
