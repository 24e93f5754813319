-- Cron schedules (DESIGN §5): a tenant's template job fired at the times of a 5-field cron in a zone.
CREATE TABLE schedules (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    name            text        NOT NULL,
    cron            text        NOT NULL,
    timezone        text        NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    misfire_policy  text        NOT NULL DEFAULT 'skip',
    -- The validated job template, camelCase as submitted: {queue, jobType, priority, payload, ...}.
    job             jsonb       NOT NULL,
    -- The next fire time (UTC), kept even while disabled; NULL: the cron fires no more.
    next_fire_at    timestamptz,
    last_fired_at   timestamptz,
    -- Fire times passed over by the `skip` misfire policy (after downtime), and the last of them.
    skipped_fires   bigint      NOT NULL DEFAULT 0,
    last_skipped_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (misfire_policy IN ('skip', 'run_once'))
);

-- The scheduler's poll: enabled schedules by their next fire time.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled;
CREATE INDEX schedules_listing ON schedules (tenant, created_at, id);
