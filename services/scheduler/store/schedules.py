"""SQL of cron firing: due schedules, the fired job's row, and the schedule's next fire time.

A fired job's row has the columns and defaults the api's POST /jobs writes (services/api/store/job_writes.py):
the scheduler inserts it itself because services never import each other.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.models import DEFAULT_MAX_ATTEMPTS, JobStatus

# Served by the partial index schedules_due; SKIP LOCKED lets a second firer (a stale leader) pass by.
LOCK_DUE = """
SELECT id, tenant, cron, timezone, misfire_policy, job, next_fire_at, now() AS db_now
FROM schedules
WHERE enabled AND next_fire_at <= now()
ORDER BY next_fire_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

# The idempotency key `cron:<schedule>:<fire time>` is unique per tenant (jobs_idempotency): a fire
# that another transaction already made inserts nothing. A template without maxAttempts takes the
# queue's (`queues.config`), as POST /jobs does; without retry it stores NULL (the worker resolves it).
INSERT_JOB = f"""
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                  tags, callback_url, idempotency_key, trace_parent, rate_limit_key, concurrency_key, fairness_key)
VALUES ($1, $2, $3, $4, '{JobStatus.PENDING}', $5, $6::text::jsonb,
        COALESCE($7, (SELECT (config ->> 'maxAttempts')::int FROM queues WHERE name = $3), {DEFAULT_MAX_ATTEMPTS}),
        $8::text::jsonb, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING max_attempts
"""

ADVANCE = """
UPDATE schedules SET next_fire_at = $2, last_fired_at = COALESCE($3, last_fired_at),
                     skipped_fires = skipped_fires + $4, last_skipped_at = COALESCE($5, last_skipped_at),
                     updated_at = now()
WHERE id = $1
"""


async def lock_due(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Enabled schedules whose next fire time has come by Postgres's clock (`db_now`), locked."""
    rows: list[asyncpg.Record] = await conn.fetch(LOCK_DUE, limit)
    return rows


async def insert_fired_job(
    conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID, job: dict[str, Any], key: str, trace_parent: str,
) -> int | None:
    """Insert the job of one fire from the template `job` (camelCase); its maxAttempts, or None if its key
    already exists."""
    retry = job.get("retry")
    max_attempts: int | None = await conn.fetchval(
        INSERT_JOB, job_id, tenant, job["queue"], job["jobType"], job["priority"],
        orjson.dumps(job["payload"]).decode(), job.get("maxAttempts"),
        None if retry is None else orjson.dumps(retry).decode(),
        job["timeoutMs"], job["tags"], job["callbackUrl"],
        key, trace_parent, job.get("rateLimitKey"), job.get("concurrencyKey"), job.get("fairnessKey"),
    )
    return max_attempts


async def advance(
    conn: asyncpg.Connection, schedule_id: uuid.UUID, next_fire_at: datetime | None, *,
    fired_at: datetime | None, skipped: int, last_skipped: datetime | None,
) -> None:
    """Move a schedule on to its next fire time, recording what fired and what was skipped."""
    await conn.execute(ADVANCE, schedule_id, next_fire_at, fired_at, skipped, last_skipped)
