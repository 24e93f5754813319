"""Webhook deliveries in Postgres: who has a callback, enqueue once per (event, url), claim, record a try, expire."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.ids import new_id

JOB_CALLBACKS = "SELECT id, tenant, callback_url FROM jobs WHERE id = ANY($1::uuid[]) AND callback_url IS NOT NULL"
BATCH_CALLBACKS = (
    "SELECT id, tenant, callback_url FROM job_batches WHERE id = ANY($1::uuid[]) AND callback_url IS NOT NULL"
)
# A rule's alert: the URL and tenant the analytics service stored with it (queue-level alerts have none).
ALERT_CALLBACKS = """
SELECT alert_id AS id, tenant, webhook_url AS callback_url FROM alerts
WHERE alert_id = ANY($1::uuid[]) AND webhook_url IS NOT NULL AND tenant IS NOT NULL
"""
# ON CONFLICT: Kafka redelivers, and every replica may consume the same event; one delivery stands.
ENQUEUE = """
INSERT INTO webhook_deliveries (id, tenant, job_id, batch_id, event_type, event_id, url, body, state, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (event_id, url) DO NOTHING
"""
# SKIP LOCKED: replicas claim disjoint rows. The claim moves next_attempt_at past the try's
# timeout (a lease), so no transaction stays open during the request, and a sender that dies
# mid-try leaves a row that falls due again once its lease ends.
CLAIM_DUE = """
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
FROM due WHERE d.id = due.id
RETURNING d.id, d.tenant, d.event_type, d.url, d.body, jsonb_array_length(d.attempts) AS tries
"""
# Fenced by the number of tries: a stale sender (lease lost) cannot record over a newer try.
RECORD_TRY = """
UPDATE webhook_deliveries
SET attempts = attempts || jsonb_build_array($2::jsonb), state = $3,
    next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
WHERE id = $1 AND state = 'pending' AND jsonb_array_length(attempts) = $5
"""


@dataclass(frozen=True, slots=True)
class Callback:
    """Where a job's or batch's events go, and whose secret signs them."""

    tenant: str
    url: str


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to enqueue; `refused` (the URL policy's reason) records it as failed at once."""

    tenant: str
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    event_type: str
    event_id: uuid.UUID
    url: str
    body: str
    refused: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery and how many tries it already had."""

    id: uuid.UUID
    tenant: str
    event_type: str
    url: str
    body: str
    tries: int


async def callbacks(pool: asyncpg.Pool, sql: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Callback]:
    """The callbacks of the given jobs (JOB_CALLBACKS), batches (BATCH_CALLBACKS) or alerts (ALERT_CALLBACKS)."""
    if not ids:
        return {}
    rows = await pool.fetch(sql, list(ids))
    return {r["id"]: Callback(r["tenant"], r["callback_url"]) for r in rows}


async def enqueue(pool: asyncpg.Pool, deliveries: Sequence[NewDelivery]) -> None:
    """Store the deliveries; one already stored for the same (event, url) is left as it is."""
    if not deliveries:
        return
    await pool.executemany(ENQUEUE, [
        (new_id(), d.tenant, d.job_id, d.batch_id, d.event_type, d.event_id, d.url, d.body,
         "pending" if d.refused is None else "failed", [] if d.refused is None else [d.refused])
        for d in deliveries
    ])


# Retention: finished deliveries past their age, oldest first, a short batch at a time, through the
# partial index of migration 0011; rows another statement holds are skipped.
DELETE_FINISHED = """
DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM webhook_deliveries
    WHERE state <> 'pending' AND updated_at < $1
    ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED))
"""


async def delete_finished(pool: asyncpg.Pool, before: datetime, limit: int, *, timeout_s: float) -> int:
    """Delete up to `limit` delivered or failed deliveries last tried before `before`; how many went."""
    status: str = await pool.execute(DELETE_FINISHED, before, limit, timeout=timeout_s)
    return int(status.rsplit(" ", 1)[-1])


async def claim_due(pool: asyncpg.Pool, limit: int, lease_s: float) -> list[DueDelivery]:
    """Up to `limit` due deliveries, leased to this sender for `lease_s`."""
    if limit <= 0:
        return []
    rows = await pool.fetch(CLAIM_DUE, limit, lease_s)
    return [DueDelivery(r["id"], r["tenant"], r["event_type"], r["url"], r["body"], r["tries"]) for r in rows]


async def record_try(
    pool: asyncpg.Pool, delivery: DueDelivery, attempt: dict[str, Any], state: str, retry_in_s: float
) -> bool:
    """Append a try's record and set the state (and when a pending one is due); False if another sender won."""
    status = await pool.execute(RECORD_TRY, delivery.id, attempt, state, retry_in_s, delivery.tries)
    return bool(status == "UPDATE 1")
