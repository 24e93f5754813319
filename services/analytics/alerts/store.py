"""The detector's SQL: window figures, closed minutes, live backlog, conditions, alerts and their outbox rows.

Everything a tick writes (condition state, alerts, outbox rows) commits in one transaction, under a
transaction-scoped advisory lock, so one replica judges at a time and a crash leaves nothing half done.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.kafka.producer import OutgoingMessage

# (namespace, key) of the detector's advisory lock: "AL", 1.
LOCK = "SELECT pg_try_advisory_xact_lock(16716, 1)"
NOW = "SELECT now()"

# Per tenant, queue and job type over the window (bucket >= $1): what finished and how long it took.
WINDOW = """
SELECT tenant, queue, job_type, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       sum(duration_count)::bigint AS duration_count, conveyor_sum_counts(duration_hist) AS duration_hist
FROM stats_minute WHERE bucket >= $1
GROUP BY tenant, queue, job_type
"""

# Per queue, job type and closed minute in [$1, $2), every tenant together: what the baselines take in.
MINUTES = """
SELECT queue, job_type, bucket, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       sum(duration_count)::bigint AS duration_count, conveyor_sum_counts(duration_hist) AS duration_hist
FROM stats_minute WHERE bucket >= $1 AND bucket < $2
GROUP BY queue, job_type, bucket
ORDER BY bucket
"""

# The backlog (DESIGN §5: pending, queued, retrying) and its oldest runnable job's age, from the jobs
# table's partial index of live jobs (jobs_live): it holds only unfinished jobs, so this costs the
# size of the backlog, never the history. ($1 = now.)
BACKLOG = """
SELECT tenant, queue, job_type, count(*) AS backlog,
       (EXTRACT(EPOCH FROM $1 - min(GREATEST(created_at, scheduled_for, next_run_at))
            FILTER (WHERE status IN ('pending', 'queued') OR (status = 'retrying' AND next_run_at <= $1)))
        * 1000)::bigint AS oldest_waiting_age_ms
FROM jobs WHERE status IN ('pending', 'queued', 'retrying')
GROUP BY tenant, queue, job_type
"""

RULES = "SELECT id, tenant, name, queue, job_type, metric, op, threshold, for_s, webhook_url FROM alert_rules"

CONDITIONS = "SELECT condition_key, baseline, samples, last_bucket, breach_since, clear_since FROM alert_conditions"
SAVE_CONDITIONS = """
INSERT INTO alert_conditions AS c (condition_key, baseline, samples, last_bucket, breach_since, clear_since, updated_at)
SELECT *, now() FROM unnest($1::text[], $2::float8[], $3::int[], $4::timestamptz[], $5::timestamptz[],
                            $6::timestamptz[])
ON CONFLICT (condition_key) DO UPDATE
SET baseline = excluded.baseline, samples = excluded.samples, last_bucket = excluded.last_bucket,
    breach_since = excluded.breach_since, clear_since = excluded.clear_since, updated_at = now()
"""
FORGET_CONDITIONS = "DELETE FROM alert_conditions WHERE condition_key = ANY($1::text[])"

_ALERT_COLUMNS = (
    "alert_id, tenant, kind, queue, job_type, rule_id, condition_key, status, severity, opened_at, resolved_at,"
    " details, webhook_url, tenants"
)
OPEN_ALERTS = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE status = 'open' AND condition_key IS NOT NULL"
# dead_letter alerts whose job left the DLQ: retried (no longer failed at that attempt) or deleted.
CLEARED_DEAD_LETTERS = f"""
SELECT {_ALERT_COLUMNS} FROM alerts a
WHERE a.kind = 'dead_letter' AND a.status = 'open'
  AND NOT EXISTS (
      SELECT 1 FROM jobs j
      WHERE j.id = (a.details->>'jobId')::uuid AND j.status = 'failed'
        AND j.attempts = (a.details->>'attempts')::int
  )
ORDER BY a.opened_at
LIMIT $1
"""
INSERT_ALERT = f"""
INSERT INTO alerts ({_ALERT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING alert_id
"""
RESOLVE_ALERT = """
UPDATE alerts SET status = 'resolved', resolved_at = $2, details = $3, webhook_url = $4, tenants = $5
WHERE alert_id = $1 AND status = 'open'
RETURNING alert_id
"""
# The shared transactional outbox (migration 0001): any service's relay may sweep what is left in it.
OUTBOX = """
INSERT INTO outbox (topic, key, value, headers)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[])
RETURNING id
"""


@dataclass
class Condition:
    """The detector's memory of one condition (an `alert_conditions` row)."""

    key: str
    baseline: float | None = None
    samples: int = 0
    last_bucket: datetime | None = None
    breach_since: datetime | None = None
    clear_since: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """An `alerts` row."""

    alert_id: uuid.UUID
    tenant: str | None
    kind: str
    queue: str | None
    job_type: str | None
    rule_id: uuid.UUID | None
    condition_key: str | None
    status: str
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    details: dict[str, Any]
    webhook_url: str | None = None
    tenants: list[str] = field(default_factory=list)


def _alert(r: asyncpg.Record) -> Alert:
    return Alert(**{k: r[k] for k in r.keys() if k != "tenants"}, tenants=list(r["tenants"]))


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Whether this transaction holds the detector's lock (another replica may hold it)."""
    return bool(await conn.fetchval(LOCK))


async def db_now(conn: asyncpg.Connection) -> datetime:
    """Postgres's clock: the buckets and every timer are judged by it."""
    now: datetime = await conn.fetchval(NOW)
    return now


async def fetch(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one of the read statements above."""
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows


async def conditions(conn: asyncpg.Connection) -> dict[str, Condition]:
    """Every condition's state, by key."""
    return {r["condition_key"]: Condition(r["condition_key"], r["baseline"], r["samples"], r["last_bucket"],
                                          r["breach_since"], r["clear_since"])
            for r in await conn.fetch(CONDITIONS)}


async def save_conditions(conn: asyncpg.Connection, states: Sequence[Condition], forget: Sequence[str]) -> None:
    """Upsert the states; delete the conditions in `forget` (rules that are gone)."""
    if states:
        await conn.execute(SAVE_CONDITIONS, [c.key for c in states], [c.baseline for c in states],
                           [c.samples for c in states], [c.last_bucket for c in states],
                           [c.breach_since for c in states], [c.clear_since for c in states])
    if forget:
        await conn.execute(FORGET_CONDITIONS, list(forget))


async def open_alerts(conn: asyncpg.Connection) -> dict[str, Alert]:
    """The open anomaly and rule alerts, by condition key."""
    return {r["condition_key"]: _alert(r) for r in await conn.fetch(OPEN_ALERTS)}


async def cleared_dead_letters(conn: asyncpg.Connection, limit: int) -> list[Alert]:
    """Open dead_letter alerts (oldest first, at most `limit`) whose job is no longer in the DLQ."""
    return [_alert(r) for r in await conn.fetch(CLEARED_DEAD_LETTERS, limit)]


async def insert_alert(conn: asyncpg.Connection, a: Alert) -> bool:
    """Store an alert; False if its id, or an open alert of its condition, is already there."""
    return await conn.fetchval(
        INSERT_ALERT, a.alert_id, a.tenant, a.kind, a.queue, a.job_type, a.rule_id, a.condition_key, a.status,
        a.severity, a.opened_at, a.resolved_at, a.details, a.webhook_url, a.tenants,
    ) is not None


async def resolve_alert(conn: asyncpg.Connection, a: Alert) -> bool:
    """Mark an open alert resolved (with its final details and webhook URL); False if it was not open."""
    return await conn.fetchval(RESOLVE_ALERT, a.alert_id, a.resolved_at, a.details, a.webhook_url,
                               a.tenants) is not None


async def add_to_outbox(conn: asyncpg.Connection, messages: Sequence[OutgoingMessage]) -> list[int]:
    """Outbox rows for the messages, in the caller's transaction; their ids."""
    if not messages:
        return []
    rows = await conn.fetch(
        OUTBOX, [m.topic for m in messages], [m.key.decode() for m in messages], [m.value for m in messages],
        [{k: v.decode() for k, v in m.headers} for m in messages],
    )
    return [r["id"] for r in rows]


async def store_consumed(pool: asyncpg.Pool, alerts: Sequence[Alert], timeout_s: float) -> None:
    """Store alerts read from the topic (the scheduler's dead_letter ones); one already stored stays as it is."""
    if not alerts:
        return
    async with pool.acquire(timeout=timeout_s) as conn, conn.transaction():
        await conn.executemany(INSERT_ALERT, [
            (a.alert_id, a.tenant, a.kind, a.queue, a.job_type, a.rule_id, a.condition_key, a.status, a.severity,
             a.opened_at, a.resolved_at, a.details, a.webhook_url, a.tenants)
            for a in alerts
        ], timeout=timeout_s)
