"""The notifier's own SQL (API keys are resolved by `shared.auth`): named statements, thin typed functions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

PING = "SELECT 1"
# Where a resume starts: the event the client saw last, in the audit log.
EVENT_POSITION = "SELECT tenant, occurred_at FROM job_events WHERE event_id = $1"
# What came after it, in the audit log's order (occurred_at, event_id); one statement per kind of
# target so that each uses its index (job_events_by_job, _by_queue, _by_time).
_AFTER = """
SELECT tenant, envelope FROM job_events
WHERE tenant = $1 AND occurred_at >= $2 AND (occurred_at, event_id) > ($2, $3) {target}
ORDER BY occurred_at, event_id
LIMIT $4
"""
EVENTS_AFTER_ALL = _AFTER.format(target="")
EVENTS_AFTER_OF_JOBS = _AFTER.format(target="AND job_id = ANY($5::uuid[])")
EVENTS_AFTER_IN_QUEUES = _AFTER.format(target="AND queue = ANY($5::text[])")
# The jobs of a batch (a batch subscriber hears their events); a batch's jobs all exist once its id is known.
BATCH_JOBS = "SELECT id FROM jobs WHERE tenant = $1 AND batch_id = $2 LIMIT $3"


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event sits in the audit log."""

    tenant: str
    occurred_at: datetime


async def ping(pool: asyncpg.Pool, *, timeout_s: float) -> None:
    """One round trip to Postgres; raises if it does not answer within `timeout_s`."""
    await pool.fetchval(PING, timeout=timeout_s)


async def event_position(pool: asyncpg.Pool, event_id: str, *, timeout_s: float) -> Position | None:
    """The tenant and time of an audited event; None if the audit log does not hold it."""
    row = await pool.fetchrow(EVENT_POSITION, uuid.UUID(event_id), timeout=timeout_s)
    return None if row is None else Position(row["tenant"], row["occurred_at"])


async def events_after(
    pool: asyncpg.Pool, after: Position, event_id: str, *, everything: bool, job_ids: list[str],
    queues: list[str], limit: int, timeout_s: float,
) -> list[tuple[str, dict[str, Any]]]:
    """(tenant, envelope) of the tenant's audited events after one, matching the targets, oldest first.

    At most `limit` per kind of target; the caller merges and cuts.
    """
    start = (after.tenant, after.occurred_at, uuid.UUID(event_id), limit)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if everything:
        statements.append((EVENTS_AFTER_ALL, start))
    else:
        if job_ids:
            statements.append((EVENTS_AFTER_OF_JOBS, (*start, [uuid.UUID(j) for j in job_ids])))
        if queues:
            statements.append((EVENTS_AFTER_IN_QUEUES, (*start, queues)))
    out: list[tuple[str, dict[str, Any]]] = []
    async with pool.acquire(timeout=timeout_s) as conn:
        for statement, args in statements:
            rows = await conn.fetch(statement, *args, timeout=timeout_s)
            out.extend((row["tenant"], row["envelope"]) for row in rows)
    return out


async def batch_jobs(pool: asyncpg.Pool, tenant: str, batch_id: str, *, limit: int, timeout_s: float) -> list[str]:
    """The ids of a batch's jobs (none: no such batch in this tenant)."""
    rows = await pool.fetch(BATCH_JOBS, tenant, uuid.UUID(batch_id), limit, timeout=timeout_s)
    return [str(row["id"]) for row in rows]
