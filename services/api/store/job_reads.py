"""Reads of the job tables: statements and the thin typed functions that run them on a connection."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

FIND_BY_IDEMPOTENCY_KEYS = """
SELECT id, status, idempotency_key, request_hash FROM jobs WHERE tenant = $1 AND idempotency_key = ANY($2::text[])
"""

EXISTING_IDS = "SELECT id FROM jobs WHERE tenant = $1 AND id = ANY($2::uuid[])"

JOB_COLUMNS = """
id, queue, job_type, status, priority, payload, max_attempts, attempts, retry, timeout_ms, created_at, updated_at,
scheduled_for, started_at, completed_at, result, error, progress, tags, depends_on, batch_id, callback_url,
idempotency_key, cancel_reason, cancel_requested, logs, checkpoint, next_run_at, rate_limit_key, concurrency_key,
fairness_key
"""

GET_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2"

ATTEMPTS_OF = """
SELECT job_id, attempt, status, worker_id, started_at, ended_at, error, late_result
FROM job_attempts WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, attempt
"""

# The listing: $1 tenant, $2 limit; filters append their own numbered conditions (see list_query).
LIST_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1{{where}} ORDER BY created_at DESC, id DESC LIMIT $2"

# A dependency is finished once completed; a dependency that no longer exists (deleted from the DLQ)
# counts as failed, so it is not waited on either.
UNFINISHED = "SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND status <> 'completed'"

JOB_STATUS = "SELECT status FROM jobs WHERE id = $1 AND tenant = $2"

JOB_EXISTS = "SELECT 1 FROM jobs WHERE id = $1 AND tenant = $2"

# The caller's ownership of the job is checked first (JOB_EXISTS); event ids are unique per job.
EVENTS_OF = "SELECT envelope FROM job_events WHERE job_id = $1 ORDER BY occurred_at, attempt, recorded_at"


async def find_by_idempotency_keys(
    conn: asyncpg.Connection, tenant: str, keys: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """Existing jobs of the tenant by idempotency key."""
    rows = await conn.fetch(FIND_BY_IDEMPOTENCY_KEYS, tenant, list(keys))
    return {r["idempotency_key"]: r for r in rows}


async def existing_ids(conn: asyncpg.Connection, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these ids name jobs of the tenant."""
    if not ids:
        return set()
    return {r["id"] for r in await conn.fetch(EXISTING_IDS, tenant, list(ids))}


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> asyncpg.Record | None:
    """One job row of the tenant."""
    row: asyncpg.Record | None = await conn.fetchrow(GET_JOB, job_id, tenant)
    return row


async def unfinished_of(conn: asyncpg.Connection, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these jobs have not completed (yet)."""
    if not ids:
        return set()
    return {r["id"] for r in await conn.fetch(UNFINISHED, list(ids))}


async def job_status(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> str | None:
    """The status of the tenant's job, None if it has no such job."""
    status: str | None = await conn.fetchval(JOB_STATUS, job_id, tenant)
    return status


async def job_exists(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> bool:
    """Whether the tenant has this job."""
    return await conn.fetchval(JOB_EXISTS, job_id, tenant) is not None


async def attempts_of(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Attempt rows grouped by job, in attempt order."""
    out: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    if job_ids:
        for row in await conn.fetch(ATTEMPTS_OF, list(job_ids)):
            out[row["job_id"]].append(row)
    return out


async def events_of(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[dict[str, object]]:
    """The job's audit trail, oldest first."""
    return [r["envelope"] for r in await conn.fetch(EVENTS_OF, job_id)]


@dataclass(frozen=True)
class JobFilter:
    """The filters of GET /jobs (all optional; they combine with AND)."""

    queue: str | None = None
    statuses: list[str] = field(default_factory=list)
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    batch_id: uuid.UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    q: str | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position: strictly older than this


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_query(f: JobFilter, limit: int, tenant: str) -> tuple[str, list[object]]:
    """The listing SQL and its arguments for a filter (conditions numbered after $1 tenant, $2 limit)."""
    args: list[object] = [tenant, limit]
    where: list[str] = []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.queue is not None:
        where.append(f"queue = {arg(f.queue)}")
    if f.statuses:
        where.append(f"status = ANY({arg(f.statuses)}::text[])")
    if f.job_type is not None:
        where.append(f"job_type = {arg(f.job_type)}")
    if f.tags:
        where.append(f"tags @> {arg(f.tags)}::text[]")
    if f.batch_id is not None:
        where.append(f"batch_id = {arg(f.batch_id)}")
    if f.created_after is not None:
        where.append(f"created_at > {arg(f.created_after)}")
    if f.created_before is not None:
        where.append(f"created_at < {arg(f.created_before)}")
    if f.q:
        try:
            where.append(f"id = {arg(uuid.UUID(f.q))}")
        except ValueError:
            pattern = arg(_like_pattern(f.q))
            where.append(f"(job_type ILIKE {pattern} OR queue ILIKE {pattern})")
    if f.after is not None:
        where.append(f"(created_at, id) < ({arg(f.after[0])}, {arg(f.after[1])})")
    clause = "".join(f" AND {w}" for w in where)
    return LIST_JOBS.format(where=clause), args


async def list_jobs(conn: asyncpg.Connection, tenant: str, f: JobFilter, limit: int) -> list[asyncpg.Record]:
    """Newest first, at most `limit` rows."""
    query, args = list_query(f, limit, tenant)
    rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    return rows
