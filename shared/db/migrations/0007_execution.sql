-- Execution semantics (issue 9): a handler's checkpoint and logs on the job, and the fencing
-- record of each attempt.
-- jobs.checkpoint: the last `ctx.checkpoint(state)` (JSON, size-bounded by the worker); the next
--   attempt's JobSpec carries it as `checkpointState`. NULL: none.
-- jobs.logs: the last lines of `ctx.log(message)`, `[{at, attempt, message}]`, oldest first,
--   trimmed to the newest 200 by the projection.
ALTER TABLE jobs
    ADD COLUMN checkpoint jsonb,
    ADD COLUMN logs       jsonb NOT NULL DEFAULT '[]';

-- job_attempts.outcome_event: the id of the event that ended the attempt. Another event ending
--   the same attempt is a late result (a worker that lost its lease) and is never applied.
-- job_attempts.late_result: that rejected result, `{outcome, at, workerId, rejected, reason, error?}`.
ALTER TABLE job_attempts
    ADD COLUMN outcome_event uuid,
    ADD COLUMN late_result   jsonb;
