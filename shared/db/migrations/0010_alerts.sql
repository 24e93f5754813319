-- Alerts (issue 10, DESIGN §5): user alert rules, every alert raised (anomalies, rules, dead letters)
-- and the detector's state per condition, so a restart forgets neither baselines nor timers.
-- Written by the analytics service (alerts, alert_conditions) and the api (alert_rules).

-- A tenant's rule: `metric op threshold` over the recent window, held `for_s` seconds, opens an alert.
-- queue / job_type NULL: every queue / job type of the tenant.
CREATE TABLE alert_rules (
    id          uuid PRIMARY KEY,
    tenant      text             NOT NULL,
    name        text             NOT NULL,
    queue       text,
    job_type    text,
    metric      text             NOT NULL,
    op          text             NOT NULL,
    threshold   double precision NOT NULL,
    for_s       integer          NOT NULL,
    webhook_url text,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT alert_rules_metric_known
        CHECK (metric IN ('failure_rate', 'backlog', 'oldest_waiting_age_ms', 'p95_duration_ms')),
    CONSTRAINT alert_rules_op_known CHECK (op IN ('>', '<')),
    CONSTRAINT alert_rules_for_s_positive CHECK (for_s >= 0)
);
CREATE INDEX alert_rules_listing ON alert_rules (tenant, created_at, id);

-- Every alert, as GET /alerts lists it. tenant NULL: a queue-level anomaly (seen by `cluster` holders
-- and the tenants with jobs in that queue). condition_key names the condition an anomaly or rule alert
-- is about (`failure_rate|<queue>|<job type>`, `rule|<id>` ...); dead_letter alerts (one per job,
-- stored from the `alerts` topic) have none. webhook_url: where the notifier posts a rule's alert
-- when it opens and when it resolves (the rule's URL, kept with the alert should the rule go).
-- tenants: of a queue-level alert, the tenants whose jobs were in the queue's figures when it was judged
-- (the notifier routes it to them; GET /alerts also shows it to any tenant with jobs in the queue).
CREATE TABLE alerts (
    alert_id      uuid PRIMARY KEY,
    tenant        text,
    kind          text        NOT NULL,
    queue         text,
    job_type      text,
    rule_id       uuid,
    condition_key text,
    status        text        NOT NULL,
    severity      text        NOT NULL,
    opened_at     timestamptz NOT NULL,
    resolved_at   timestamptz,
    details       jsonb       NOT NULL DEFAULT '{}',
    webhook_url   text,
    tenants       text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_kind_known CHECK (kind IN ('failure_rate', 'duration', 'backlog', 'rule', 'dead_letter')),
    CONSTRAINT alerts_status_known CHECK (status IN ('open', 'resolved')),
    CONSTRAINT alerts_resolved_at CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- One condition has at most one open alert.
CREATE UNIQUE INDEX alerts_one_open ON alerts (condition_key) WHERE status = 'open';
-- The detector resolves a dead_letter alert once its job left the DLQ (retried or deleted).
CREATE INDEX alerts_open_dead_letters ON alerts (opened_at) WHERE kind = 'dead_letter' AND status = 'open';
CREATE INDEX alerts_listing ON alerts (opened_at DESC, alert_id DESC);
CREATE INDEX alerts_of_tenant ON alerts (tenant, opened_at DESC, alert_id DESC);

-- The detector's memory per condition: the EWMA baseline and the minute it last took in, when the
-- condition started to hold (rules: `forS`) and when an open alert's condition cleared (hysteresis).
CREATE TABLE alert_conditions (
    condition_key  text PRIMARY KEY,
    baseline       double precision,
    samples        integer     NOT NULL DEFAULT 0,
    last_bucket    timestamptz,
    breach_since   timestamptz,
    clear_since    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
