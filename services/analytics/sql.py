"""All of the analytics service's SQL: named statements next to thin typed functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

PING = "SELECT 1"

# One round trip per batch. The counters are fed from the RETURNING rows of the audit-log
# insert, so an event that was already recorded (a redelivery) is neither stored nor counted
# twice. Both inserts run in sorted key order so that concurrent batches (two replicas during
# a rebalance) lock rows in the same order and cannot deadlock.
RECORD_EVENTS = """
WITH incoming AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::integer[], $8::timestamptz[], $9::jsonb[], $10::bigint[]
    ) AS t(event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope, duration_ms)
),
inserted AS (
    INSERT INTO job_events (event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope)
    SELECT event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope
    FROM incoming
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, type, queue, occurred_at
),
counted AS (
    INSERT INTO queue_minute_stats AS s (queue, minute, outcome, count, duration_ms_sum)
    SELECT i.queue, date_trunc('minute', i.occurred_at, 'UTC'), i.type, count(*), coalesce(sum(x.duration_ms), 0)
    FROM inserted i JOIN incoming x ON x.event_id = i.event_id
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (queue, minute, outcome) DO UPDATE
        SET count = s.count + EXCLUDED.count,
            duration_ms_sum = s.duration_ms_sum + EXCLUDED.duration_ms_sum
)
SELECT type, count(*)::integer AS n FROM inserted GROUP BY type
"""


async def record_events(pool: asyncpg.Pool, columns: Sequence[Sequence[Any]], *, timeout_s: float) -> dict[str, int]:
    """Insert the events given column-wise (in RECORD_EVENTS' parameter order); new events counted by type."""
    rows = await pool.fetch(RECORD_EVENTS, *columns, timeout=timeout_s)
    return {row["type"]: row["n"] for row in rows}


async def ping(pool: asyncpg.Pool, *, timeout_s: float) -> None:
    """One round trip to Postgres; raises if it does not answer within `timeout_s`."""
    await pool.fetchval(PING, timeout=timeout_s)
