"""All of the analytics service's SQL: named statements next to thin typed functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

PING = "SELECT 1"

# The counters of a stats_* row, summed on conflict; the arrays are added element-wise and
# `errors` key-wise. An empty addition leaves the stored value alone.
STATS_SUMMED = (
    "submitted", "started", "completed", "failed", "retried", "cancelled",
    "duration_ms_sum", "duration_count", "wait_ms_sum", "wait_count",
)
STATS_ARRAYS = ("duration_hist", "wait_hist", "completed_by_attempt", "retried_by_attempt", "failed_by_attempt")
STATS_KEY = ("tenant", "queue", "job_type", "bucket")
STATS_TABLES = ("stats_minute", "stats_hour", "stats_day")

# Element-wise sum of the stored array and the addition, the shorter one padded with zeros (as
# conveyor_add_counts of 0009 does, written inline: a call of that SQL function per array and
# row cost more than the rest of the row's upsert).
_ADD_COUNTS = (
    "ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0)"
    " FROM unnest(s.{c}, EXCLUDED.{c}) WITH ORDINALITY AS u(a, b, i) ORDER BY i)"
)


def _unnest(types: tuple[str, ...], names: tuple[str, ...], first: int = 1) -> str:
    params = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=first))
    return f"unnest({params}) AS t({', '.join(names)})"


STATS_PARAMS = len(STATS_KEY) + len(STATS_SUMMED) + len(STATS_ARRAYS) + 1


def _upsert_stats(table: str, first: int) -> str:
    """Add rows given column-wise (key, sums, array literals, errors) into one stats_* table, in key order."""
    columns = (*STATS_KEY, *STATS_SUMMED, *STATS_ARRAYS, "errors")
    types = ("text", "text", "text", "timestamptz", *("bigint",) * len(STATS_SUMMED),
             *("text",) * len(STATS_ARRAYS), "jsonb")
    values = [*STATS_KEY, *STATS_SUMMED, *(f"{c}::bigint[]" for c in STATS_ARRAYS), "errors"]
    sets = [f"{c} = s.{c} + EXCLUDED.{c}" for c in STATS_SUMMED]
    sets += [f"{c} = CASE WHEN EXCLUDED.{c} = '{{}}' THEN s.{c} ELSE {_ADD_COUNTS.format(c=c)} END"
             for c in STATS_ARRAYS]
    sets.append("errors = CASE WHEN EXCLUDED.errors = '{}' THEN s.errors"
                " ELSE conveyor_add_jsonb_counts(s.errors, EXCLUDED.errors) END")
    return (
        f"INSERT INTO {table} AS s ({', '.join(columns)})\n"
        f"SELECT {', '.join(values)} FROM {_unnest(types, columns, first)}\n"
        f"ORDER BY {', '.join(STATS_KEY)}\n"
        "ON CONFLICT (tenant, queue, job_type, bucket) DO UPDATE SET\n    " + ",\n    ".join(sets)
    )


# The recording transaction (services/analytics/recorder.py): two statements. The audit
# insert's RETURNING says which events are new: only those are added to the aggregates, so a
# redelivered event is neither stored nor counted twice. Every insert writes its rows in sorted
# key order, and both statements have a fixed shape (Postgres runs the upserts of ADD_AGGREGATES
# in the same order each time), so two replicas recording overlapping batches lock rows in one
# global order and cannot deadlock.
INSERT_EVENTS = f"""
INSERT INTO job_events (event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope)
SELECT event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope::jsonb
FROM {_unnest(("uuid", "uuid", "text", "text", "text", "text", "integer", "timestamptz", "text"),
                       ("event_id", "job_id", "tenant", "type", "queue", "job_type", "attempt", "occurred_at",
                        "envelope"))}
ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_WORKERS_FIRST = 1 + len(STATS_TABLES) * STATS_PARAMS
_QUEUE_MINUTES_FIRST = _WORKERS_FIRST + 6

# Parameters: each stats table's columns (STATS_KEY, STATS_SUMMED, STATS_ARRAYS as bigint[]
# literals, errors) in STATS_TABLES order, then worker_stats_minute's, then queue_minute_stats'.
_STATS_CTES = ",\n".join(
    f"{table}_added AS ({_upsert_stats(table, 1 + i * STATS_PARAMS)})" for i, table in enumerate(STATS_TABLES)
)
ADD_AGGREGATES = f"""
WITH {_STATS_CTES},
workers_added AS (
    INSERT INTO worker_stats_minute AS w (worker_id, bucket, completed, failed, retried, busy_ms)
    SELECT * FROM {_unnest(("text", "timestamptz", "bigint", "bigint", "bigint", "bigint"),
                           ("worker_id", "bucket", "completed", "failed", "retried", "busy_ms"), _WORKERS_FIRST)}
    ORDER BY worker_id, bucket
    ON CONFLICT (worker_id, bucket) DO UPDATE
        SET completed = w.completed + EXCLUDED.completed, failed = w.failed + EXCLUDED.failed,
            retried = w.retried + EXCLUDED.retried, busy_ms = w.busy_ms + EXCLUDED.busy_ms
)
-- The older per-queue minute counters (the API's 429 Retry-After reads them): every event type,
-- duration_ms_sum over completed events only.
INSERT INTO queue_minute_stats AS s (queue, minute, outcome, count, duration_ms_sum)
SELECT * FROM {_unnest(("text", "timestamptz", "text", "bigint", "bigint"),
                       ("queue", "minute", "outcome", "count", "duration_ms_sum"), _QUEUE_MINUTES_FIRST)}
ORDER BY queue, minute, outcome
ON CONFLICT (queue, minute, outcome) DO UPDATE
    SET count = s.count + EXCLUDED.count, duration_ms_sum = s.duration_ms_sum + EXCLUDED.duration_ms_sum
"""


async def insert_events(conn: asyncpg.Connection, columns: Sequence[Sequence[Any]], *, timeout_s: float) -> set[Any]:
    """Append the events given column-wise (INSERT_EVENTS' order) to the audit log; the ids that were new."""
    rows = await conn.fetch(INSERT_EVENTS, *columns, timeout=timeout_s)
    return {row["event_id"] for row in rows}


async def add_aggregates(
    conn: asyncpg.Connection,
    stats: Sequence[Sequence[Sequence[Any]]],
    workers: Sequence[Sequence[Any]],
    queue_minutes: Sequence[Sequence[Any]],
    *,
    timeout_s: float,
) -> None:
    """Add the rows given column-wise to each stats table (STATS_TABLES order), workers and queue minutes."""
    await conn.execute(ADD_AGGREGATES, *(c for table in stats for c in table), *workers, *queue_minutes,
                       timeout=timeout_s)


# Retention: a table, its time column, and one short statement per batch of expired rows. The
# rows are picked through the time index and locked SKIP LOCKED, so the cleaner never waits on
# a recording batch (a batch may wait on it, briefly: one batch is one short statement); they
# are deleted by ctid (a TID scan, no second index walk).
EXPIRING: dict[str, str] = {
    "job_events": "occurred_at",
    "stats_minute": "bucket",
    "stats_hour": "bucket",
    "worker_stats_minute": "bucket",
}


def _delete_expired(table: str, column: str) -> str:
    return (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {table} WHERE {column} < $1 ORDER BY {column} LIMIT $2 FOR UPDATE SKIP LOCKED))"
    )


DELETE_EXPIRED = {table: _delete_expired(table, column) for table, column in EXPIRING.items()}

# Any constant works; every analytics replica must agree on it.
RETENTION_LOCK_KEY = 0xA0D17_C1EA
TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"


async def delete_expired(
    conn: asyncpg.Connection, table: str, before: datetime, limit: int, *, timeout_s: float
) -> int:
    """Delete up to `limit` rows of `table` older than `before`; how many went."""
    status: str = await conn.execute(DELETE_EXPIRED[table], before, limit, timeout=timeout_s)
    return int(status.rsplit(" ", 1)[-1])


async def try_lock(conn: asyncpg.Connection, *, timeout_s: float) -> bool:
    """Take the cleaner's session lock on `conn` if no other replica holds it."""
    return bool(await conn.fetchval(TRY_LOCK, RETENTION_LOCK_KEY, timeout=timeout_s))


async def unlock(conn: asyncpg.Connection, *, timeout_s: float) -> None:
    """Give the cleaner's lock back."""
    await conn.fetchval(UNLOCK, RETENTION_LOCK_KEY, timeout=timeout_s)


async def ping(pool: asyncpg.Pool, *, timeout_s: float) -> None:
    """One round trip to Postgres; raises if it does not answer within `timeout_s`."""
    await pool.fetchval(PING, timeout=timeout_s)
