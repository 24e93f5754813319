"""The `queues` table and the per-queue figures of the jobs table: statements and thin typed functions.

`queues` (migration 0006) is the truth for a queue's config and pause flag; every change is announced
with NOTIFY on NOTIFY_CHANNEL (delivered at commit) so each api replica refreshes its rules cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from shared.models import JobStatus

NOTIFY_CHANNEL = "conveyor_queues"

# Jobs that count against `maxLength` (DESIGN §5): blocked and not-yet-due scheduled jobs do not.
BACKLOG = [JobStatus.PENDING.value, JobStatus.QUEUED.value, JobStatus.RETRYING.value]
STATUSES = [s.value for s in JobStatus]

# Submissions to a queue with `maxLength` serialize on this lock (transaction-scoped): the backlog they
# count includes every submission committed before them. The first key is the lock's namespace.
LOCK_NAMESPACE = 0x5155  # "QU"
LOCK_FOR_ADMISSION = "SELECT pg_advisory_xact_lock($1, hashtext($2))"

# Counting stops at the limit: a full queue never costs more than `maxLength` index entries.
COUNT_BACKLOG = """
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = $1 AND status = ANY($2::text[]) LIMIT $3) AS b
"""

# Starts per second over the last one to two minutes, from the analytics service's per-minute counts
# (an index lookup, unlike scanning jobs); NULL when none were recorded.
DRAIN_RATE = """
SELECT sum(count)::float8 / EXTRACT(EPOCH FROM now() - (date_trunc('minute', now()) - interval '1 minute'))
FROM queue_minute_stats
WHERE queue = $1 AND outcome = 'started' AND minute >= date_trunc('minute', now()) - interval '1 minute'
"""

ALL_RULES = "SELECT name, config, paused FROM queues"
GET = "SELECT name, config, paused FROM queues WHERE name = $1"

# Create the row if needed, then lock it: concurrent partial PUTs merge one after the other.
CREATE = "INSERT INTO queues (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
LOCK_ROW = "SELECT name, config, paused FROM queues WHERE name = $1 FOR UPDATE"
UPDATE = """
UPDATE queues SET config = $2::text::jsonb, paused = $3, updated_at = now() WHERE name = $1
RETURNING name, config, paused
"""
NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)"

# Per queue: jobs by status, the oldest runnable waiting job's age and completions over the last minute.
# `$1` is the tenant, or NULL for every tenant (a `cluster` caller); `$2` one queue, or NULL for all.
FIGURES = f"""
SELECT queue,
       {", ".join(f"count(*) FILTER (WHERE status = '{s}') AS {s}" for s in STATUSES)},
       (EXTRACT(EPOCH FROM now() - min(GREATEST(created_at, scheduled_for, next_run_at))
            FILTER (WHERE status IN ('pending', 'queued')
                    OR (status = 'retrying' AND next_run_at <= now())))
        * 1000)::bigint AS oldest_waiting_age_ms,
       count(*) FILTER (WHERE status = 'completed' AND completed_at > now() - interval '1 minute')
           AS throughput_per_min
FROM jobs
WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR queue = $2)
GROUP BY queue
"""

@dataclass(frozen=True)
class QueueRow:
    """A `queues` row: the stored camelCase config (only the keys set) and the pause flag."""

    name: str
    config: dict[str, Any]
    paused: bool


def _row(record: asyncpg.Record) -> QueueRow:
    return QueueRow(record["name"], dict(record["config"] or {}), record["paused"])


async def all_rows(conn: asyncpg.Connection) -> list[QueueRow]:
    """Every configured queue."""
    return [_row(r) for r in await conn.fetch(ALL_RULES)]


async def get(conn: asyncpg.Connection, name: str) -> QueueRow | None:
    """One configured queue, or None."""
    record = await conn.fetchrow(GET, name)
    return None if record is None else _row(record)


async def lock(conn: asyncpg.Connection, name: str) -> QueueRow:
    """The queue's row, created if absent, locked until the transaction ends."""
    await conn.execute(CREATE, name)
    record = await conn.fetchrow(LOCK_ROW, name)
    assert record is not None  # inserted above, and rows are never deleted
    return _row(record)


async def store(conn: asyncpg.Connection, name: str, config: dict[str, Any], paused: bool) -> QueueRow:
    """Write a (locked) queue's config and pause flag, and announce the change (sent at commit)."""
    record = await conn.fetchrow(UPDATE, name, orjson.dumps(config).decode(), paused)
    await conn.execute(NOTIFY, name)
    return _row(record)


async def lock_for_admission(conn: asyncpg.Connection, queue: str) -> None:
    """Serialize submissions to `queue` until this transaction ends (queues with maxLength only)."""
    await conn.execute(LOCK_FOR_ADMISSION, LOCK_NAMESPACE, queue)


async def backlog(conn: asyncpg.Connection, queue: str, up_to: int) -> int:
    """Jobs pending, queued or retrying in `queue`, counted up to `up_to`."""
    n: int = await conn.fetchval(COUNT_BACKLOG, queue, BACKLOG, up_to)
    return n


async def drain_rate(conn: asyncpg.Connection, queue: str) -> float | None:
    """Starts per second lately (None when nothing was recorded)."""
    rate: float | None = await conn.fetchval(DRAIN_RATE, queue)
    return rate


async def figures(conn: asyncpg.Connection, tenant: str | None, queue: str | None) -> dict[str, asyncpg.Record]:
    """Per-queue counts by status, oldest waiting age and throughput; `tenant` None means every tenant."""
    return {r["queue"]: r for r in await conn.fetch(FIGURES, tenant, queue)}
