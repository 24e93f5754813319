-- Jobs, their attempts, batches, the transactional outbox, the audit log and aggregates.

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    tenant           text        NOT NULL DEFAULT 'default',
    queue            text        NOT NULL,
    job_type         text        NOT NULL,
    status           text        NOT NULL,
    priority         smallint    NOT NULL,
    payload          jsonb       NOT NULL,
    max_attempts     integer     NOT NULL,
    retry            jsonb       NOT NULL,
    timeout_ms       integer,
    scheduled_for    timestamptz,
    depends_on       uuid[]      NOT NULL DEFAULT '{}',
    tags             text[]      NOT NULL DEFAULT '{}',
    callback_url     text,
    idempotency_key  text,
    request_hash     text,
    batch_id         uuid,
    attempts         integer     NOT NULL DEFAULT 0,
    -- (state_attempt, state_rank) of the last event applied: older events are stale.
    state_attempt    integer     NOT NULL DEFAULT 0,
    state_rank       smallint    NOT NULL DEFAULT 0,
    result           jsonb,
    error            jsonb,
    progress         jsonb,
    cancel_reason    text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    next_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    CONSTRAINT jobs_priority_range CHECK (priority BETWEEN 0 AND 10),
    CONSTRAINT jobs_status_known CHECK (status IN (
        'pending', 'blocked', 'scheduled', 'queued', 'running',
        'retrying', 'completed', 'failed', 'cancelled'))
);

CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_listing ON jobs (tenant, created_at DESC, id DESC);
CREATE INDEX jobs_queue_listing ON jobs (tenant, queue, created_at DESC, id DESC);
CREATE INDEX jobs_live ON jobs (status, updated_at)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_depends_on ON jobs USING gin (depends_on) WHERE status = 'blocked';
CREATE INDEX jobs_tags ON jobs USING gin (tags);

CREATE TABLE job_attempts (
    job_id     uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    integer     NOT NULL,
    worker_id  text,
    status     text        NOT NULL,
    started_at timestamptz,
    ended_at   timestamptz,
    error      jsonb,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE job_batches (
    id         uuid PRIMARY KEY,
    tenant     text        NOT NULL,
    total      integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job_events (
    event_id    uuid PRIMARY KEY,
    job_id      uuid        NOT NULL,
    tenant      text        NOT NULL DEFAULT 'default',
    type        text        NOT NULL,
    queue       text        NOT NULL,
    job_type    text        NOT NULL,
    attempt     integer     NOT NULL,
    occurred_at timestamptz NOT NULL,
    envelope    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_by_job ON job_events (job_id, occurred_at);

-- Per-queue per-minute counts of events by type (submitted, completed, failed, ...).
CREATE TABLE queue_minute_stats (
    queue    text        NOT NULL,
    minute   timestamptz NOT NULL,
    outcome  text        NOT NULL,
    count    bigint      NOT NULL,
    duration_ms_sum bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute, outcome)
);

CREATE TABLE api_keys (
    key_hash   text PRIMARY KEY,
    tenant     text        NOT NULL,
    scopes     text[]      NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
