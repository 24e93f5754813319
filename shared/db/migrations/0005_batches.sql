-- Batch completion (issue 9): when every job of a batch is terminal the scheduler sets
-- completed_at (once: `WHERE completed_at IS NULL`) and emits `batch_completed` in the same
-- transaction. callback_url is the batch's webhook (called by the notifier).
ALTER TABLE job_batches
    ADD COLUMN completed_at timestamptz,
    ADD COLUMN callback_url text;
