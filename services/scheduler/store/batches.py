"""Batch completion: lock the open batches of finished jobs, complete those whose jobs are all terminal.

Two statements on purpose: the lock (statement 1) waits for a concurrent transaction that finished
another job of the same batch; the check (statement 2) then takes a fresh snapshot that sees it. In
one statement both transactions could miss each other's last job and the batch would never complete.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.models import TERMINAL, WAITING, JobStatus

_TERMINAL = sorted(s.value for s in TERMINAL)
# `pending` in a batch's counts is every waiting state (DESIGN §5), as in GET /job-batches/{id}.
_WAITING = sorted(s.value for s in WAITING)

# Batch rows are locked in id order, after the job rows of the transaction: no lock cycle.
LOCK_OPEN_BATCHES = """
SELECT b.id FROM job_batches b
WHERE b.id IN (SELECT j.batch_id FROM jobs j WHERE j.id = ANY($1::uuid[]) AND j.batch_id IS NOT NULL)
  AND b.completed_at IS NULL
ORDER BY b.id
FOR UPDATE OF b
"""

COMPLETE_BATCHES = """
UPDATE job_batches b SET completed_at = now()
WHERE b.id = ANY($1::uuid[]) AND b.completed_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.tenant = b.tenant AND j.status <> ALL($2::text[])
  )
RETURNING b.id, b.tenant, b.total, b.completed_at
"""

BATCH_COUNTS = f"""
SELECT j.batch_id,
       count(*) FILTER (WHERE j.status = ANY($2::text[])) AS pending,
       count(*) FILTER (WHERE j.status = '{JobStatus.RUNNING}') AS running,
       count(*) FILTER (WHERE j.status = '{JobStatus.COMPLETED}') AS completed,
       count(*) FILTER (WHERE j.status = '{JobStatus.FAILED}') AS failed,
       count(*) FILTER (WHERE j.status = '{JobStatus.CANCELLED}') AS cancelled
FROM jobs j WHERE j.batch_id = ANY($1::uuid[])
GROUP BY j.batch_id
"""

COUNT_NAMES = ("pending", "running", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class CompletedBatch:
    """A batch this transaction completed, with its final counts."""

    id: uuid.UUID
    tenant: str
    completed_at: datetime
    counts: dict[str, int]


async def complete_batches(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> list[CompletedBatch]:
    """Mark complete the open batches of `job_ids` whose every job is terminal; each batch at most once ever."""
    locked = [r["id"] for r in await conn.fetch(LOCK_OPEN_BATCHES, list(job_ids))]
    if not locked:
        return []
    done = await conn.fetch(COMPLETE_BATCHES, locked, _TERMINAL)
    if not done:
        return []
    counted = {r["batch_id"]: r for r in await conn.fetch(BATCH_COUNTS, [r["id"] for r in done], _WAITING)}
    out = []
    for row in done:
        by_state = counted.get(row["id"])
        counts = {"total": row["total"], **{n: (by_state[n] if by_state else 0) for n in COUNT_NAMES}}
        out.append(CompletedBatch(row["id"], row["tenant"], row["completed_at"], counts))
    return out


INSERT_OUTBOX = """
INSERT INTO outbox (topic, key, value, headers)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[])
RETURNING id
"""


async def insert_outbox(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, bytes, dict[str, str]]]
) -> list[int]:
    """Outbox rows (topic, key, value, headers) for messages that are not job envelopes; returns their ids."""
    fetched = await conn.fetch(
        INSERT_OUTBOX, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )
    return [r["id"] for r in fetched]
