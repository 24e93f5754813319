"""All of the analytics service's SQL: named statements next to thin typed functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

PING = "SELECT 1"

# The counters of a stats_* row, summed on conflict; the arrays are added element-wise and
# `errors` key-wise (the 0009 helpers). An empty addition leaves the stored value alone.
_SUMMED = (
    "submitted", "started", "completed", "failed", "retried", "cancelled",
    "duration_ms_sum", "duration_count", "wait_ms_sum", "wait_count",
)
_ARRAYS = ("duration_hist", "wait_hist", "completed_by_attempt", "retried_by_attempt", "failed_by_attempt")
_STATS_COLUMNS = ("tenant", "queue", "job_type", "bucket", *_SUMMED, *_ARRAYS, "errors")


def _upsert_stats(table: str, resolution: str) -> str:
    """The CTE body adding this batch's `stats` rows of one resolution into `table`."""
    sets = [f"{c} = s.{c} + EXCLUDED.{c}" for c in _SUMMED]
    sets += [
        f"{c} = CASE WHEN EXCLUDED.{c} = '{{}}' THEN s.{c} ELSE conveyor_add_counts(s.{c}, EXCLUDED.{c}) END"
        for c in _ARRAYS
    ]
    sets.append("errors = CASE WHEN EXCLUDED.errors = '{}' THEN s.errors"
                " ELSE conveyor_add_jsonb_counts(s.errors, EXCLUDED.errors) END")
    columns = ", ".join(_STATS_COLUMNS)
    return (
        f"INSERT INTO {table} AS s ({columns})\n"
        f"    SELECT {columns} FROM stats WHERE res = '{resolution}'\n"
        "    ORDER BY tenant, queue, job_type, bucket\n"
        "    ON CONFLICT (tenant, queue, job_type, bucket) DO UPDATE SET\n        "
        + ",\n        ".join(sets)
    )


# One round trip per batch, one transaction. Everything downstream of the audit-log insert is
# fed from its RETURNING rows, so an event that was already recorded (a redelivery) is neither
# stored nor counted twice, and a crash leaves either all of a batch or none of it. Every
# insert runs in sorted key order and the statement's shape is fixed, so concurrent batches
# (two replicas during a rebalance) lock rows in one order and cannot deadlock.
#
# Per new event Python passes its histogram slots and attempt slot (services/analytics/facts.py);
# here each event is counted once per resolution (minute, hour, day), its slots turned into dense
# count arrays per row (up to the highest slot used: conveyor_add_counts pads the shorter side).
RECORD_EVENTS = f"""
WITH incoming AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::integer[], $8::timestamptz[], $9::jsonb[], $10::bigint[], $11::integer[],
        $12::bigint[], $13::integer[], $14::integer[], $15::text[], $16::text[]
    ) AS t(event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope,
           duration_ms, duration_slot, wait_ms, wait_slot, attempt_slot, error_type, worker_id)
),
inserted AS (
    INSERT INTO job_events (event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope)
    SELECT event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope
    FROM incoming
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
fresh AS (
    SELECT x.* FROM incoming x JOIN inserted USING (event_id)
),
per_bucket AS (
    -- dispatched and progress events add nothing to a stats row: they write none.
    SELECT r.res, date_trunc(r.res, f.occurred_at, 'UTC') AS bucket, f.*
    FROM fresh f CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS r(res)
    WHERE f.type IN ('submitted', 'started', 'completed', 'retry', 'failed', 'cancelled')
),
totals AS (
    SELECT res, tenant, queue, job_type, bucket,
           count(*) FILTER (WHERE type = 'submitted') AS submitted,
           count(*) FILTER (WHERE type = 'started') AS started,
           count(*) FILTER (WHERE type = 'completed') AS completed,
           count(*) FILTER (WHERE type = 'failed') AS failed,
           count(*) FILTER (WHERE type = 'retry') AS retried,
           count(*) FILTER (WHERE type = 'cancelled') AS cancelled,
           coalesce(sum(duration_ms), 0) AS duration_ms_sum, count(duration_ms) AS duration_count,
           coalesce(sum(wait_ms), 0) AS wait_ms_sum, count(wait_ms) AS wait_count
    FROM per_bucket GROUP BY 1, 2, 3, 4, 5
),
cells AS (
    SELECT p.res, p.tenant, p.queue, p.job_type, p.bucket, c.kind, c.idx, count(*) AS n
    FROM per_bucket p CROSS JOIN LATERAL (VALUES
        ('duration', p.duration_slot),
        ('wait', p.wait_slot),
        ('completed', CASE WHEN p.type = 'completed' THEN p.attempt_slot END),
        ('retried', CASE WHEN p.type = 'retry' THEN p.attempt_slot END),
        ('failed', CASE WHEN p.type = 'failed' THEN p.attempt_slot END)
    ) AS c(kind, idx)
    WHERE c.idx IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7
),
dense AS (
    SELECT b.res, b.tenant, b.queue, b.job_type, b.bucket, b.kind,
           array_agg(coalesce(c.n, 0) ORDER BY s.i) AS counts
    FROM (SELECT res, tenant, queue, job_type, bucket, kind, max(idx) AS top FROM cells GROUP BY 1, 2, 3, 4, 5, 6) b
    CROSS JOIN LATERAL generate_series(1, b.top) AS s(i)
    LEFT JOIN cells c ON (c.res, c.tenant, c.queue, c.job_type, c.bucket, c.kind, c.idx)
                       = (b.res, b.tenant, b.queue, b.job_type, b.bucket, b.kind, s.i)
    GROUP BY 1, 2, 3, 4, 5, 6
),
arrays AS (
    SELECT res, tenant, queue, job_type, bucket,
           max(counts) FILTER (WHERE kind = 'duration') AS duration_hist,
           max(counts) FILTER (WHERE kind = 'wait') AS wait_hist,
           max(counts) FILTER (WHERE kind = 'completed') AS completed_by_attempt,
           max(counts) FILTER (WHERE kind = 'retried') AS retried_by_attempt,
           max(counts) FILTER (WHERE kind = 'failed') AS failed_by_attempt
    FROM dense GROUP BY 1, 2, 3, 4, 5
),
errors AS (
    SELECT res, tenant, queue, job_type, bucket, jsonb_object_agg(error_type, n) AS errors
    FROM (SELECT res, tenant, queue, job_type, bucket, error_type, count(*) AS n
          FROM per_bucket WHERE error_type IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6) AS by_type
    GROUP BY 1, 2, 3, 4, 5
),
stats AS (
    SELECT t.*,
           coalesce(a.duration_hist, '{{}}') AS duration_hist, coalesce(a.wait_hist, '{{}}') AS wait_hist,
           coalesce(a.completed_by_attempt, '{{}}') AS completed_by_attempt,
           coalesce(a.retried_by_attempt, '{{}}') AS retried_by_attempt,
           coalesce(a.failed_by_attempt, '{{}}') AS failed_by_attempt,
           coalesce(e.errors, '{{}}') AS errors
    FROM totals t
    LEFT JOIN arrays a USING (res, tenant, queue, job_type, bucket)
    LEFT JOIN errors e USING (res, tenant, queue, job_type, bucket)
),
minutes AS ({_upsert_stats("stats_minute", "minute")}),
hours AS ({_upsert_stats("stats_hour", "hour")}),
days AS ({_upsert_stats("stats_day", "day")}),
workers AS (
    INSERT INTO worker_stats_minute AS w (worker_id, bucket, completed, failed, retried, busy_ms)
    SELECT worker_id, bucket,
           count(*) FILTER (WHERE type = 'completed'), count(*) FILTER (WHERE type = 'failed'),
           count(*) FILTER (WHERE type = 'retry'), coalesce(sum(duration_ms), 0)
    FROM per_bucket
    WHERE res = 'minute' AND worker_id IS NOT NULL
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (worker_id, bucket) DO UPDATE
        SET completed = w.completed + EXCLUDED.completed, failed = w.failed + EXCLUDED.failed,
            retried = w.retried + EXCLUDED.retried, busy_ms = w.busy_ms + EXCLUDED.busy_ms
),
counted AS (
    -- The older per-queue minute counters (the API's 429 Retry-After reads them): as before,
    -- duration_ms_sum over completed events only.
    INSERT INTO queue_minute_stats AS s (queue, minute, outcome, count, duration_ms_sum)
    SELECT queue, date_trunc('minute', occurred_at, 'UTC'), type, count(*),
           coalesce(sum(duration_ms) FILTER (WHERE type = 'completed'), 0)
    FROM fresh
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (queue, minute, outcome) DO UPDATE
        SET count = s.count + EXCLUDED.count,
            duration_ms_sum = s.duration_ms_sum + EXCLUDED.duration_ms_sum
)
SELECT type, count(*)::integer AS n FROM fresh GROUP BY type
"""


async def record_events(pool: asyncpg.Pool, columns: Sequence[Sequence[Any]], *, timeout_s: float) -> dict[str, int]:
    """Insert the events given column-wise (in RECORD_EVENTS' parameter order); new events counted by type."""
    rows = await pool.fetch(RECORD_EVENTS, *columns, timeout=timeout_s)
    return {row["type"]: row["n"] for row in rows}


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
