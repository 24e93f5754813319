"""Thin typed functions over the job tables; each runs one statement of jobs_sql on a connection."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from services.api import jobs_sql as sql
from services.api.submission import NewJob
from shared.events import Envelope
from shared.kafka.producer import message_for
from shared.outbox import Outgoing


async def insert_jobs(
    conn: asyncpg.Connection, tenant: str, batch_id: uuid.UUID | None, jobs: Sequence[NewJob],
    trace_parent: str | None = None,
) -> set[uuid.UUID]:
    """Insert jobs in one statement; returns the ids stored (a job whose idempotency key exists is not)."""
    rows = await conn.fetch(
        sql.INSERT_JOBS,
        tenant,
        batch_id,
        [j.id for j in jobs],
        [j.queue for j in jobs],
        [j.job_type for j in jobs],
        [j.priority for j in jobs],
        [j.payload_json for j in jobs],
        [j.max_attempts for j in jobs],
        [j.retry.model_dump_json(by_alias=True) for j in jobs],
        [j.timeout_ms for j in jobs],
        [j.scheduled_for for j in jobs],
        [orjson.dumps([str(d) for d in j.depends_on]).decode() for j in jobs],
        [orjson.dumps(j.tags).decode() for j in jobs],
        [j.callback_url for j in jobs],
        [j.idempotency_key for j in jobs],
        [j.request_hash for j in jobs],
        trace_parent,
    )
    return {r["id"] for r in rows}


async def insert_one(conn: asyncpg.Connection, tenant: str, job: NewJob, event: Envelope) -> Outgoing | None:
    """Insert one job with its outbox row in a single statement; None if its idempotency key exists."""
    message = message_for(event)
    outbox_id = await conn.fetchval(
        sql.SUBMIT_ONE,
        job.id, tenant, job.queue, job.job_type, job.priority, job.payload_json, job.max_attempts,
        job.retry.model_dump_json(by_alias=True), job.timeout_ms, job.scheduled_for, job.depends_on, job.tags,
        job.callback_url, job.idempotency_key, job.request_hash,
        message.topic, message.key.decode(), message.value, {k: v.decode() for k, v in message.headers},
        event.trace_parent,
    )
    return None if outbox_id is None else Outgoing([outbox_id], [message])


async def find_by_idempotency_keys(
    conn: asyncpg.Connection, tenant: str, keys: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """Existing jobs of the tenant by idempotency key."""
    rows = await conn.fetch(sql.FIND_BY_IDEMPOTENCY_KEYS, tenant, list(keys))
    return {r["idempotency_key"]: r for r in rows}


async def existing_ids(conn: asyncpg.Connection, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these ids name jobs of the tenant."""
    if not ids:
        return set()
    return {r["id"] for r in await conn.fetch(sql.EXISTING_IDS, tenant, list(ids))}


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> asyncpg.Record | None:
    """One job row of the tenant."""
    row: asyncpg.Record | None = await conn.fetchrow(sql.GET_JOB, job_id, tenant)
    return row


async def attempts_of(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Attempt rows grouped by job, in attempt order."""
    out: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    if job_ids:
        for row in await conn.fetch(sql.ATTEMPTS_OF, list(job_ids)):
            out[row["job_id"]].append(row)
    return out


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
    return sql.LIST_JOBS.format(where=clause), args


async def list_jobs(conn: asyncpg.Connection, tenant: str, f: JobFilter, limit: int) -> list[asyncpg.Record]:
    """Newest first, at most `limit` rows."""
    query, args = list_query(f, limit, tenant)
    rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    return rows


async def events_of(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[dict[str, object]]:
    """The job's audit trail, oldest first."""
    return [r["envelope"] for r in await conn.fetch(sql.EVENTS_OF, job_id)]


async def job_exists(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> bool:
    """Whether the tenant has this job."""
    return await conn.fetchval(sql.JOB_EXISTS, job_id, tenant) is not None
