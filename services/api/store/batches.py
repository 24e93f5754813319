"""The job_batches table: statements and the thin typed functions that run them on a connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.models import WAITING, JobStatus

# `pending` in a batch's counts is every waiting state (DESIGN §5).
_WAITING = sorted(s.value for s in WAITING)

INSERT_BATCH = "INSERT INTO job_batches (id, tenant, total, callback_url) VALUES ($1, $2, $3, $4)"

BATCH_COUNTS = f"""
SELECT b.total, b.completed_at,
       count(j.id) FILTER (WHERE j.status = ANY($3::text[])) AS pending,
       count(j.id) FILTER (WHERE j.status = '{JobStatus.RUNNING}') AS running,
       count(j.id) FILTER (WHERE j.status = '{JobStatus.COMPLETED}') AS completed,
       count(j.id) FILTER (WHERE j.status = '{JobStatus.FAILED}') AS failed,
       count(j.id) FILTER (WHERE j.status = '{JobStatus.CANCELLED}') AS cancelled
FROM job_batches b LEFT JOIN jobs j ON j.batch_id = b.id AND j.tenant = b.tenant
WHERE b.id = $1 AND b.tenant = $2
GROUP BY b.id, b.total, b.completed_at
"""

COUNT_NAMES = ("total", "pending", "running", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class BatchState:
    """A batch's counts and when the scheduler saw its last job end (None while running)."""

    counts: dict[str, int]
    completed_at: datetime | None


async def insert_batch(
    conn: asyncpg.Connection, tenant: str, batch_id: uuid.UUID, total: int, callback_url: str | None = None
) -> None:
    """The batch row its jobs point at."""
    await conn.execute(INSERT_BATCH, batch_id, tenant, total, callback_url)


async def batch_state(conn: asyncpg.Connection, tenant: str, batch_id: uuid.UUID) -> BatchState | None:
    """Counts `{total, pending, running, completed, failed, cancelled}` and completion of the tenant's batch;
    None if it has none."""
    row = await conn.fetchrow(BATCH_COUNTS, batch_id, tenant, _WAITING)
    if row is None:
        return None
    return BatchState({name: row[name] for name in COUNT_NAMES}, row["completed_at"])
