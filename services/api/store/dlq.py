"""The dead-letter queue's reads and deletes: failed jobs of a tenant, newest failure first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.api.store.job_reads import JOB_COLUMNS
from shared.models import JobStatus

# When a job failed: the projection sets completed_at on every terminal state; updated_at covers a row
# that lacks it. Not indexed yet: an index on it for failed rows would be migration 0004 (after 0003).
FAILED_AT = "COALESCE(completed_at, updated_at)"
# The error the job failed with: the row's, else its last failed attempt's (as GET /jobs/{id} shows it).
LAST_ERROR = (
    "COALESCE(error, (SELECT a.error FROM job_attempts a"
    " WHERE a.job_id = jobs.id AND a.error IS NOT NULL ORDER BY a.attempt DESC LIMIT 1))"
)

# $1 tenant, $2 limit; filters append their own numbered conditions (see _where).
LIST_FAILED = f"""
SELECT {JOB_COLUMNS}, {FAILED_AT} AS failed_at FROM jobs
WHERE tenant = $1 AND status = '{JobStatus.FAILED}'{{where}}
ORDER BY {FAILED_AT} DESC, id DESC LIMIT $2
"""

# The rows of the CSV export: only what it shows, with the error resolved in SQL.
EXPORT_FAILED = f"""
SELECT id, queue, job_type, attempts, payload, {LAST_ERROR} AS last_error, {FAILED_AT} AS failed_at FROM jobs
WHERE tenant = $1 AND status = '{JobStatus.FAILED}'{{where}}
ORDER BY {FAILED_AT} DESC, id DESC LIMIT $2
"""

# Ids for a bulk action, locked so a concurrent retry or delete of the same jobs waits for this one.
SELECT_FAILED_IDS = f"""
SELECT id FROM jobs WHERE tenant = $1 AND status = '{JobStatus.FAILED}'{{where}}
ORDER BY {FAILED_AT} DESC, id DESC LIMIT $2 FOR UPDATE
"""

# job_attempts go with their job (ON DELETE CASCADE); job_events have no foreign key and stay.
DELETE_FAILED = f"""
DELETE FROM jobs WHERE id = ANY($1::uuid[]) AND tenant = $2 AND status = '{JobStatus.FAILED}' RETURNING id
"""


@dataclass(frozen=True)
class DeadLetterFilter:
    """Filters of the DLQ routes (all optional, combined with AND); `after` is a keyset position."""

    queue: str | None = None
    job_type: str | None = None
    error_type: str | None = None
    failed_after: datetime | None = None
    failed_before: datetime | None = None
    ids: Sequence[uuid.UUID] | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # strictly older failures than this


def _where(f: DeadLetterFilter, args: list[object]) -> str:
    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    where: list[str] = []
    if f.queue is not None:
        where.append(f"queue = {arg(f.queue)}")
    if f.job_type is not None:
        where.append(f"job_type = {arg(f.job_type)}")
    if f.error_type is not None:
        where.append(f"{LAST_ERROR} ->> 'type' = {arg(f.error_type)}")
    if f.failed_after is not None:
        where.append(f"{FAILED_AT} > {arg(f.failed_after)}")
    if f.failed_before is not None:
        where.append(f"{FAILED_AT} < {arg(f.failed_before)}")
    if f.ids is not None:
        where.append(f"id = ANY({arg(list(f.ids))}::uuid[])")
    if f.after is not None:
        where.append(f"({FAILED_AT}, id) < ({arg(f.after[0])}, {arg(f.after[1])})")
    return "".join(f" AND {w}" for w in where)


async def _fetch(
    conn: asyncpg.Connection, statement: str, tenant: str, f: DeadLetterFilter, limit: int
) -> list[asyncpg.Record]:
    args: list[object] = [tenant, limit]
    rows: list[asyncpg.Record] = await conn.fetch(statement.format(where=_where(f, args)), *args)
    return rows


async def list_failed(conn: asyncpg.Connection, tenant: str, f: DeadLetterFilter, limit: int) -> list[asyncpg.Record]:
    """Job rows (JOB_COLUMNS and `failed_at`), newest failure first, at most `limit`."""
    return await _fetch(conn, LIST_FAILED, tenant, f, limit)


async def export_rows(conn: asyncpg.Connection, tenant: str, f: DeadLetterFilter, limit: int) -> list[asyncpg.Record]:
    """Rows of the CSV export (`id, queue, job_type, attempts, payload, last_error, failed_at`), newest first."""
    return await _fetch(conn, EXPORT_FAILED, tenant, f, limit)


async def lock_failed_ids(
    conn: asyncpg.Connection, tenant: str, f: DeadLetterFilter, limit: int
) -> list[uuid.UUID]:
    """Ids of matching failed jobs, newest failure first, locked for update (inside a transaction)."""
    return [r["id"] for r in await _fetch(conn, SELECT_FAILED_IDS, tenant, f, limit)]


async def delete_failed(conn: asyncpg.Connection, tenant: str, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Delete these failed jobs of the tenant (attempts with them); returns the ids deleted."""
    return [r["id"] for r in await conn.fetch(DELETE_FAILED, list(job_ids), tenant)]
