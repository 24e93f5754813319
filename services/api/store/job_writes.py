"""Writes to the job tables: statements and the thin typed functions that run them on a connection."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

import asyncpg
import orjson

from services.api.jobs.job_plan import NewJob
from shared.events import RANK, Envelope, EventType
from shared.kafka.producer import message_for
from shared.models import TERMINAL, JobStatus
from shared.outbox import Outgoing

# A manual retry brings back a job that ended badly; a completed one stays completed.
RETRYABLE: frozenset[JobStatus] = TERMINAL - {JobStatus.COMPLETED}
_RETRYABLE = sorted(s.value for s in RETRYABLE)

# One statement inserts one job or a whole batch: columns travel as arrays. depends_on and tags are
# arrays per job, which unnest would flatten, so they travel as JSON text and are rebuilt per row.
INSERT_JOBS = f"""
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                  scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash, batch_id, trace_parent,
                  rate_limit_key, concurrency_key, fairness_key)
SELECT u.id, $1, u.queue, u.job_type, '{JobStatus.PENDING}', u.priority, u.payload::jsonb, u.max_attempts,
       u.retry::jsonb, u.timeout_ms, u.scheduled_for,
       ARRAY(SELECT d::uuid FROM jsonb_array_elements_text(u.depends_on::jsonb) AS d),
       ARRAY(SELECT t FROM jsonb_array_elements_text(u.tags::jsonb) AS t),
       u.callback_url, u.idempotency_key, u.request_hash, $2, $17, u.rate_limit_key, u.concurrency_key,
       u.fairness_key
FROM unnest($3::uuid[], $4::text[], $5::text[], $6::int2[], $7::text[], $8::int4[], $9::text[], $10::int4[],
            $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $18::text[],
            $19::text[], $20::text[])
     AS u(id, queue, job_type, priority, payload, max_attempts, retry, timeout_ms,
          scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash, rate_limit_key,
          concurrency_key, fairness_key)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

# The hot path: one job and its outbox row in ONE statement (a statement is its own transaction), a single
# round trip instead of BEGIN + 2 INSERTs + COMMIT. The outbox columns are those shared.outbox.enqueue writes,
# filled from shared.kafka.producer.message_for. No outbox row when the idempotency key already exists.
SUBMIT_ONE = f"""
WITH job AS (
    INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                      scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash, trace_parent,
                      rate_limit_key, concurrency_key, fairness_key)
    VALUES ($1, $2, $3, $4, '{JobStatus.PENDING}', $5, $6::text::jsonb, $7, $8::text::jsonb, $9, $10, $11, $12, $13,
            $14, $15, $20, $21, $22, $23)
    ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
INSERT INTO outbox (topic, key, value, headers)
SELECT $16, $17, $18, $19 FROM job
RETURNING id
"""

LOCK_JOB = """
SELECT id, status, queue, job_type, state_attempt, trace_parent FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE
"""

# The `cancelled` rank at the current state_attempt makes every in-flight event of this attempt stale.
CANCEL_NOW = f"""
UPDATE jobs SET status = '{JobStatus.CANCELLED}', cancel_reason = 'cancelled_by_user', completed_at = now(),
                updated_at = now(), state_rank = {RANK[EventType.CANCELLED]}, next_run_at = NULL
WHERE id = $1
"""

REQUEST_CANCEL = "UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1"

# The columns a manual retry resets; `budget` is the SQL of the job's original maxAttempts (NULL: unknown).
_RESET = f"""status = '{JobStatus.PENDING}',
    max_attempts = j.attempts + LEAST(GREATEST(COALESCE({{budget}}, j.max_attempts), 1), 100),
    state_rank = {RANK[EventType.SUBMITTED]}, error = NULL, result = NULL, progress = NULL, started_at = NULL,
    completed_at = NULL, scheduled_for = NULL, next_run_at = NULL, cancel_reason = NULL, cancel_requested = false,
    updated_at = now()"""
_RETRIED = """old.status AS previous_status, j.id, j.queue, j.job_type, j.priority, j.payload, j.max_attempts,
          j.retry, j.timeout_ms, j.depends_on, j.tags, j.batch_id, j.callback_url, j.trace_parent"""

# A fresh budget of the job's original maxAttempts (from its first `submitted` event when the audit log
# has it, else the current value) on top of the attempts already made, so attempt numbers keep rising.
RETRY_JOB = f"""
WITH old AS (
    SELECT id, status FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE
), budget AS (
    SELECT (e.envelope #>> '{{data,maxAttempts}}')::int AS max_attempts
    FROM job_events e
    WHERE e.job_id = (SELECT id FROM old) AND e.type = '{EventType.SUBMITTED}'
      AND jsonb_typeof(e.envelope #> '{{data,maxAttempts}}') = 'number'
    ORDER BY e.occurred_at LIMIT 1
)
UPDATE jobs j SET
    {_RESET.format(budget="(SELECT max_attempts FROM budget)")}
FROM old
WHERE j.id = old.id AND old.status = ANY($3::text[])
RETURNING {_RETRIED}
"""

# The same row change for many failed jobs of a tenant at once (the dead-letter queue's bulk retry).
# $1 ids, $2 tenant, $3 retryable statuses; ids that are not the tenant's or not retryable are skipped.
RETRY_JOBS = f"""
WITH old AS (
    SELECT id, status, cancel_requested FROM jobs
    WHERE id = ANY($1::uuid[]) AND tenant = $2 AND status = ANY($3::text[])
    ORDER BY id FOR UPDATE
), budget AS (
    SELECT DISTINCT ON (e.job_id) e.job_id, (e.envelope #>> '{{data,maxAttempts}}')::int AS max_attempts
    FROM job_events e
    WHERE e.job_id IN (SELECT id FROM old) AND e.type = '{EventType.SUBMITTED}'
      AND jsonb_typeof(e.envelope #> '{{data,maxAttempts}}') = 'number'
    ORDER BY e.job_id, e.occurred_at
)
UPDATE jobs j SET
    {_RESET.format(budget="b.max_attempts")}
FROM old LEFT JOIN budget b ON b.job_id = old.id
WHERE j.id = old.id
RETURNING {_RETRIED}, old.cancel_requested AS cancel_was_requested
"""


async def insert_jobs(
    conn: asyncpg.Connection, tenant: str, batch_id: uuid.UUID | None, jobs: Sequence[NewJob],
    trace_parent: str | None = None,
) -> set[uuid.UUID]:
    """Insert jobs in one statement; returns the ids stored (a job whose idempotency key exists is not)."""
    rows = await conn.fetch(
        INSERT_JOBS,
        tenant,
        batch_id,
        [j.id for j in jobs],
        [j.queue for j in jobs],
        [j.job_type for j in jobs],
        [j.priority for j in jobs],
        [j.payload_json for j in jobs],
        [j.max_attempts for j in jobs],
        [j.retry_json for j in jobs],
        [j.timeout_ms for j in jobs],
        [j.scheduled_for for j in jobs],
        [orjson.dumps([str(d) for d in j.depends_on]).decode() for j in jobs],
        [orjson.dumps(j.tags).decode() for j in jobs],
        [j.callback_url for j in jobs],
        [j.idempotency_key for j in jobs],
        [j.request_hash for j in jobs],
        trace_parent,
        [j.rate_limit_key for j in jobs],
        [j.concurrency_key for j in jobs],
        [j.fairness_key for j in jobs],
    )
    return {r["id"] for r in rows}


async def insert_one(conn: asyncpg.Connection, tenant: str, job: NewJob, event: Envelope) -> Outgoing | None:
    """Insert one job with its outbox row in a single statement; None if its idempotency key exists."""
    message = message_for(event)
    outbox_id = await conn.fetchval(
        SUBMIT_ONE,
        job.id, tenant, job.queue, job.job_type, job.priority, job.payload_json, job.max_attempts,
        job.retry_json, job.timeout_ms, job.scheduled_for, job.depends_on, job.tags,
        job.callback_url, job.idempotency_key, job.request_hash,
        message.topic, message.key.decode(), message.value, {k: v.decode() for k, v in message.headers},
        event.trace_parent, job.rate_limit_key, job.concurrency_key, job.fairness_key,
    )
    return None if outbox_id is None else Outgoing([outbox_id], [message])


async def lock_job(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> asyncpg.Record | None:
    """The tenant's job row locked for update: `status`, `queue`, `job_type`, `state_attempt`, `trace_parent`."""
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_JOB, job_id, tenant)
    return row


async def cancel_now(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    """Mark a (locked, waiting) job cancelled by its user."""
    await conn.execute(CANCEL_NOW, job_id)


async def request_cancel(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    """Flag a running job so its worker stops it and reports the outcome."""
    await conn.execute(REQUEST_CANCEL, job_id)


async def reset_for_retry(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> asyncpg.Record | None:
    """Move a failed or cancelled job back to pending; None if it is not the tenant's or not retryable."""
    row: asyncpg.Record | None = await conn.fetchrow(RETRY_JOB, job_id, tenant, _RETRYABLE)
    return row


async def reset_many_for_retry(
    conn: asyncpg.Connection, tenant: str, job_ids: Sequence[uuid.UUID], statuses: Collection[JobStatus] = RETRYABLE,
) -> list[asyncpg.Record]:
    """RETRY_JOB for many jobs at once (rows also carry `cancel_was_requested`); others are skipped."""
    rows: list[asyncpg.Record] = await conn.fetch(
        RETRY_JOBS, list(job_ids), tenant, sorted(s.value for s in statuses)
    )
    return rows
