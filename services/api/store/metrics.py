"""Reads of the analytics aggregates (stats_minute/hour/day, worker_stats_minute, migration 0009) and of
the live jobs: every statement of the analytics routes.

None of these scans the jobs table. Event figures come from the aggregates the analytics service keeps
(bounded by queues x job types x buckets, not by jobs); current state (backlog, oldest waiting job, live
counts by status) comes through the partial index `jobs_live` (0001), which holds only the jobs that are
not finished yet, so its cost follows the backlog, never the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from services.api.analytics.windows import EPOCH, Span
from shared.analytics.histogram import MAX_ATTEMPT_SLOT, SLOTS

COUNTS = ("submitted", "started", "completed", "failed", "retried", "cancelled")
SUMS = (*COUNTS, "duration_ms_sum", "duration_count", "wait_ms_sum", "wait_count")
HISTOGRAMS = {"duration_hist": SLOTS, "wait_hist": SLOTS}
BY_ATTEMPT = {name: MAX_ATTEMPT_SLOT for name in ("completed_by_attempt", "retried_by_attempt", "failed_by_attempt")}
TABLE_OF = {"minute": "stats_minute", "hour": "stats_hour", "day": "stats_day"}

# $1 tenant (NULL: every tenant, a `cluster` caller), $2 queue, $3 job type (NULL: any).
_FILTER = ("($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR queue = $2)"
           " AND ($3::text IS NULL OR job_type = $3)")


def _array_sum(column: str, slots: int) -> str:
    # Element-wise sums by subscript: much cheaper than the conveyor_sum_counts aggregate (one SQL
    # function call per row), and the slot counts are fixed by shared.analytics.histogram.
    sums = ", ".join(f"coalesce(sum({column}[{i}]), 0)" for i in range(1, slots + 1))
    return f"ARRAY[{sums}]::bigint[] AS {column}"


_COLUMNS = ", ".join(("queue", "job_type", *SUMS, *HISTOGRAMS, *BY_ATTEMPT))

# The window's rows per queue and job type: minute rows from $4, hour rows from $5, day rows from $6
# (windows.Span), each range ending where the next begins.
WINDOW_FIGURES = f"""
WITH covering AS (
    SELECT {_COLUMNS} FROM stats_minute WHERE {_FILTER} AND bucket >= $4 AND bucket < $5
    UNION ALL
    SELECT {_COLUMNS} FROM stats_hour WHERE {_FILTER} AND bucket >= $5 AND bucket < $6
    UNION ALL
    SELECT {_COLUMNS} FROM stats_day WHERE {_FILTER} AND bucket >= $6
)
SELECT queue, job_type,
       {", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in SUMS)},
       {", ".join(_array_sum(c, n) for c, n in {**HISTOGRAMS, **BY_ATTEMPT}.items())}
FROM covering
GROUP BY queue, job_type
ORDER BY queue, job_type
"""

# Per step of the timeline ($4: the step, $5: first step's start, $6: the end), from the rows of one
# resolution that the step is a whole multiple of (windows.resolution_of), so each row falls in one step.
TIMELINE = {
    resolution: f"""
SELECT date_bin($4::interval, bucket, $7::timestamptz) AS at,
       sum(submitted)::bigint AS submitted, sum(completed)::bigint AS completed,
       sum(failed)::bigint AS failed, sum(retried)::bigint AS retried
FROM {table}
WHERE {_FILTER} AND bucket >= $5 AND bucket < $6
GROUP BY 1
"""
    for resolution, table in TABLE_OF.items()
}

# Jobs finished since the beginning, by outcome (day rows: a handful per queue and job type and day).
ALL_TIME = f"""
SELECT coalesce(sum(completed), 0)::bigint AS completed, coalesce(sum(failed), 0)::bigint AS failed,
       coalesce(sum(cancelled), 0)::bigint AS cancelled
FROM stats_day WHERE {_FILTER}
"""

# Live jobs by queue and status through `jobs_live` (its predicate is repeated so the planner uses it).
# A job waits since it was created, due (scheduledFor) or due again (a retry's next run), whichever is
# last; a retrying job waits only once its backoff has passed (as GET /queues reads it).
LIVE = """
SELECT queue, status, count(*)::bigint AS n,
       (EXTRACT(EPOCH FROM now() - min(GREATEST(created_at, scheduled_for, next_run_at))
            FILTER (WHERE status IN ('pending', 'queued') OR (status = 'retrying' AND next_run_at <= now())))
        * 1000)::bigint AS oldest_waiting_age_ms
FROM jobs
WHERE status NOT IN ('completed', 'failed', 'cancelled') AND ($1::text IS NULL OR tenant = $1)
GROUP BY queue, status
"""

WORKER_FIGURES = """
SELECT worker_id, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       sum(retried)::bigint AS retried, sum(busy_ms)::bigint AS busy_ms, min(bucket) AS first_bucket
FROM worker_stats_minute
WHERE bucket >= $1
GROUP BY worker_id
"""


@dataclass(frozen=True)
class Live:
    """Live jobs of one queue and status; the oldest waiting age is None unless some of them wait."""

    queue: str
    status: str
    count: int
    oldest_waiting_age_ms: int | None


async def window_figures(
    conn: asyncpg.Connection, tenant: str | None, span: Span, queue: str | None = None, job_type: str | None = None,
) -> list[asyncpg.Record]:
    """Summed counts, histograms and by-attempt arrays per queue and job type over the span."""
    return list(await conn.fetch(WINDOW_FIGURES, tenant, queue, job_type, span.start, span.hours_from, span.days_from))


async def timeline(
    conn: asyncpg.Connection, tenant: str | None, queue: str | None, resolution: Literal["minute", "hour", "day"],
    step: timedelta, first: datetime, end: datetime,
) -> dict[datetime, asyncpg.Record]:
    """Counts per step start (steps without rows are absent)."""
    rows = await conn.fetch(TIMELINE[resolution], tenant, queue, None, step, first, end, EPOCH)
    return {r["at"]: r for r in rows}


async def all_time(conn: asyncpg.Connection, tenant: str | None) -> asyncpg.Record:
    """Completed, failed and cancelled jobs since the beginning."""
    record = await conn.fetchrow(ALL_TIME, tenant, None, None)
    assert record is not None  # an aggregate without GROUP BY always answers one row
    return record


async def live(conn: asyncpg.Connection, tenant: str | None) -> list[Live]:
    """Unfinished jobs by queue and status, with the oldest waiting age."""
    return [Live(r["queue"], r["status"], r["n"], r["oldest_waiting_age_ms"]) for r in await conn.fetch(LIVE, tenant)]


async def worker_figures(conn: asyncpg.Connection, since: datetime) -> dict[str, asyncpg.Record]:
    """Per worker: finished attempts and busy milliseconds since `since`."""
    return {r["worker_id"]: r for r in await conn.fetch(WORKER_FIGURES, since)}
