-- Analytics (issue 10, DESIGN §5): aggregates per tenant, queue and job type at three
-- resolutions, per-worker minutes, and the indexes the audit log is queried and trimmed by.
-- Written by the analytics service only; read by the API's metrics routes (never the jobs table).

-- Element-wise sum of two count arrays (a shorter one counts as zeros past its end).
CREATE FUNCTION conveyor_add_counts(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(a[i], 0) + coalesce(b[i], 0) ORDER BY i), '{}'::bigint[])
    FROM generate_series(1, greatest(coalesce(array_length(a, 1), 0), coalesce(array_length(b, 1), 0))) AS i
$$;

-- Key-wise sum of two {key: count} objects.
CREATE FUNCTION conveyor_add_jsonb_counts(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
    FROM (
        SELECT key, sum(value::bigint) AS total
        FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
              UNION ALL
              SELECT * FROM jsonb_each_text(coalesce(b, '{}'::jsonb))) AS both_sides
        GROUP BY key
    ) AS summed
$$;

-- Aggregates over rows: conveyor_sum_counts(duration_hist), conveyor_sum_jsonb_counts(errors).
CREATE AGGREGATE conveyor_sum_counts(bigint[]) (
    SFUNC = conveyor_add_counts, STYPE = bigint[], INITCOND = '{}', PARALLEL = SAFE
);
CREATE AGGREGATE conveyor_sum_jsonb_counts(jsonb) (
    SFUNC = conveyor_add_jsonb_counts, STYPE = jsonb, INITCOND = '{}', PARALLEL = SAFE
);

-- One row per (tenant, queue, job type, minute). Counts are events of that minute by type
-- (occurred_at, UTC). Histograms hold counts per bucket of shared/analytics/histogram.py
-- (index i+1 = bucket i; the last is +Inf): duration_hist over finished attempts (completed,
-- retry, failed events' durationMs), wait_hist over starts (started events' waitMs: from
-- when the attempt was due to its start). *_by_attempt: index n = attempt n, the last slot
-- (shared.analytics.histogram.MAX_ATTEMPT_SLOT) also holding every later attempt. errors:
-- error type → count over retry and failed events.
CREATE TABLE stats_minute (
    tenant                text        NOT NULL,
    queue                 text        NOT NULL,
    job_type              text        NOT NULL,
    bucket                timestamptz NOT NULL,
    submitted             bigint      NOT NULL DEFAULT 0,
    started               bigint      NOT NULL DEFAULT 0,
    completed             bigint      NOT NULL DEFAULT 0,
    failed                bigint      NOT NULL DEFAULT 0,
    retried               bigint      NOT NULL DEFAULT 0,
    cancelled             bigint      NOT NULL DEFAULT 0,
    duration_ms_sum       bigint      NOT NULL DEFAULT 0,
    duration_count        bigint      NOT NULL DEFAULT 0,
    duration_hist         bigint[]    NOT NULL DEFAULT '{}',
    wait_ms_sum           bigint      NOT NULL DEFAULT 0,
    wait_count            bigint      NOT NULL DEFAULT 0,
    wait_hist             bigint[]    NOT NULL DEFAULT '{}',
    completed_by_attempt  bigint[]    NOT NULL DEFAULT '{}',
    retried_by_attempt    bigint[]    NOT NULL DEFAULT '{}',
    failed_by_attempt     bigint[]    NOT NULL DEFAULT '{}',
    errors                jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant, queue, job_type, bucket)
);
CREATE INDEX stats_minute_by_time ON stats_minute (bucket);

-- The same, summed per hour and per day (written with the minute, in the same statement).
CREATE TABLE stats_hour (LIKE stats_minute INCLUDING ALL);
CREATE TABLE stats_day (LIKE stats_minute INCLUDING ALL);

-- Per worker and minute: what it finished and how long it was busy (for utilisation).
CREATE TABLE worker_stats_minute (
    worker_id  text        NOT NULL,
    bucket     timestamptz NOT NULL,
    completed  bigint      NOT NULL DEFAULT 0,
    failed     bigint      NOT NULL DEFAULT 0,
    retried    bigint      NOT NULL DEFAULT 0,
    busy_ms    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (worker_id, bucket)
);
CREATE INDEX worker_stats_minute_by_time ON worker_stats_minute (bucket);

-- The audit log by queue, job type and time (queries, resume, the retention cleaner).
CREATE INDEX job_events_by_queue ON job_events (tenant, queue, occurred_at);
CREATE INDEX job_events_by_type ON job_events (tenant, job_type, occurred_at);
CREATE INDEX job_events_by_time ON job_events (occurred_at);
