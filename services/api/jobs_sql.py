"""SQL of the job routes (parameterized; the repository modules beside this one run it)."""

from __future__ import annotations

# One statement inserts one job or a whole batch: columns travel as arrays. depends_on and tags are
# arrays per job, which unnest would flatten, so they travel as JSON text and are rebuilt per row.
INSERT_JOBS = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                  scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash, batch_id, trace_parent)
SELECT u.id, $1, u.queue, u.job_type, 'pending', u.priority, u.payload::jsonb, u.max_attempts, u.retry::jsonb,
       u.timeout_ms, u.scheduled_for,
       ARRAY(SELECT d::uuid FROM jsonb_array_elements_text(u.depends_on::jsonb) AS d),
       ARRAY(SELECT t FROM jsonb_array_elements_text(u.tags::jsonb) AS t),
       u.callback_url, u.idempotency_key, u.request_hash, $2, $17
FROM unnest($3::uuid[], $4::text[], $5::text[], $6::int2[], $7::text[], $8::int4[], $9::text[], $10::int4[],
            $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
     AS u(id, queue, job_type, priority, payload, max_attempts, retry, timeout_ms,
          scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash)
ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""

# The hot path: one job and its outbox row in ONE statement (a statement is its own transaction), a single
# round trip instead of BEGIN + 2 INSERTs + COMMIT. The outbox columns are those shared.outbox.enqueue writes,
# filled from shared.kafka.producer.message_for. No outbox row when the idempotency key already exists.
SUBMIT_ONE = """
WITH job AS (
    INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                      scheduled_for, depends_on, tags, callback_url, idempotency_key, request_hash, trace_parent)
    VALUES ($1, $2, $3, $4, 'pending', $5, $6::text::jsonb, $7, $8::text::jsonb, $9, $10, $11, $12, $13, $14, $15,
            $20)
    ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
INSERT INTO outbox (topic, key, value, headers)
SELECT $16, $17, $18, $19 FROM job
RETURNING id
"""

FIND_BY_IDEMPOTENCY_KEYS = """
SELECT id, status, idempotency_key, request_hash FROM jobs WHERE tenant = $1 AND idempotency_key = ANY($2::text[])
"""

EXISTING_IDS = "SELECT id FROM jobs WHERE tenant = $1 AND id = ANY($2::uuid[])"

JOB_COLUMNS = """
id, queue, job_type, status, priority, payload, max_attempts, attempts, retry, timeout_ms, created_at, updated_at,
scheduled_for, started_at, completed_at, result, error, progress, tags, depends_on, batch_id, callback_url,
idempotency_key, cancel_reason, cancel_requested
"""

GET_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2"

ATTEMPTS_OF = """
SELECT job_id, attempt, status, worker_id, started_at, ended_at, error
FROM job_attempts WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, attempt
"""

# The listing: $1 tenant, $2 limit; filters append their own numbered conditions.
LIST_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1{{where}} ORDER BY created_at DESC, id DESC LIMIT $2"

LOCK_JOB = """
SELECT id, status, queue, job_type, state_attempt, trace_parent FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE
"""

# state_rank 5 (cancelled) at the current state_attempt makes every in-flight event of this attempt stale.
CANCEL_NOW = """
UPDATE jobs SET status = 'cancelled', cancel_reason = 'cancelled_by_user', completed_at = now(), updated_at = now(),
                state_rank = 5, next_run_at = NULL
WHERE id = $1
"""

REQUEST_CANCEL = "UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1"

JOB_STATUS = "SELECT status FROM jobs WHERE id = $1 AND tenant = $2"

# A fresh budget of the job's original maxAttempts (from its first `submitted` event when the audit log
# has it, else the current value) on top of the attempts already made, so attempt numbers keep rising.
RETRY_JOB = """
WITH old AS (
    SELECT id, status FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE
), budget AS (
    SELECT (e.envelope #>> '{data,maxAttempts}')::int AS max_attempts
    FROM job_events e
    WHERE e.job_id = (SELECT id FROM old) AND e.type = 'submitted'
      AND jsonb_typeof(e.envelope #> '{data,maxAttempts}') = 'number'
    ORDER BY e.occurred_at LIMIT 1
)
UPDATE jobs j SET
    status = 'pending',
    max_attempts = j.attempts + LEAST(GREATEST(COALESCE((SELECT max_attempts FROM budget), j.max_attempts), 1), 100),
    state_rank = 0, error = NULL, result = NULL, progress = NULL, started_at = NULL, completed_at = NULL,
    scheduled_for = NULL, next_run_at = NULL, cancel_reason = NULL, cancel_requested = false, updated_at = now()
FROM old
WHERE j.id = old.id AND old.status IN ('failed', 'cancelled')
RETURNING old.status AS previous_status, j.id, j.queue, j.job_type, j.priority, j.payload, j.max_attempts,
          j.retry, j.timeout_ms, j.depends_on, j.tags, j.batch_id, j.callback_url, j.trace_parent
"""

JOB_EXISTS = "SELECT 1 FROM jobs WHERE id = $1 AND tenant = $2"

# The caller's ownership of the job is checked first (JOB_EXISTS); event ids are unique per job.
EVENTS_OF = "SELECT envelope FROM job_events WHERE job_id = $1 ORDER BY occurred_at, attempt, recorded_at"
