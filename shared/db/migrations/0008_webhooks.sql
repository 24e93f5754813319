-- Webhooks (issue 10, DESIGN §5): the per-tenant signing secret and the durable deliveries the
-- notifier makes to a job's or a batch's callbackUrl.

-- One secret per tenant: `Conveyor-Signature` is an HMAC-SHA256 keyed by its UTF-8 bytes.
-- Created on first need (the notifier) or by `make dev` / compose init for the default tenant.
CREATE TABLE tenant_webhook_secrets (
    tenant     text PRIMARY KEY,
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (event, url): the same event consumed twice (Kafka redelivery, two notifier
-- replicas) never makes a second delivery. `id` is the Conveyor-Delivery header, the same on
-- every try. attempts: [{at, status (HTTP code or null), error?, durationMs}], oldest first.
-- A pending row whose next_attempt_at passed is due; a sender claims it by moving
-- next_attempt_at past its request timeout (a lease: a sender that dies mid-try is retried).
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    tenant          text        NOT NULL,
    job_id          uuid,
    batch_id        uuid,
    event_type      text        NOT NULL,
    event_id        uuid        NOT NULL,
    url             text        NOT NULL,
    body            text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending',
    attempts        jsonb       NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_state_known CHECK (state IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_once UNIQUE (event_id, url)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_of_job ON webhook_deliveries (job_id, created_at) WHERE job_id IS NOT NULL;
CREATE INDEX webhook_deliveries_of_batch ON webhook_deliveries (batch_id, created_at) WHERE batch_id IS NOT NULL;
