-- Queue configuration and the per-job scheduling keys (issue 9).
-- `queues` is the truth for a queue's config and pause flag; the api mirrors each change into
-- the queue's Redis config hash before it answers (pop.lua enforces it there), and the
-- scheduler's reconciler restores the mirror after Redis loses it. A queue appears here when
-- PUT /queues/{name} (or pause/resume) first touches it.
CREATE TABLE queues (
    name       text        PRIMARY KEY,
    config     jsonb       NOT NULL DEFAULT '{}',
    paused     boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- rateLimitKey / concurrencyKey / fairnessKey of a submission (DESIGN §5), null when not given.
-- retry becomes nullable: null means "the job gave none", so the queue's default (resolved by
-- the api at submission) or else the worker's per-type default applies.
ALTER TABLE jobs
    ADD COLUMN rate_limit_key  text,
    ADD COLUMN concurrency_key text,
    ADD COLUMN fairness_key    text,
    ALTER COLUMN retry DROP NOT NULL;
