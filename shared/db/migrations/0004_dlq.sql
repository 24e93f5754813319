-- The dead-letter list and export (GET /dlq, /dlq/export.csv) read a tenant's failed jobs, newest
-- failure first; without this they sort every failed row of the tenant.
CREATE INDEX jobs_dead_letters ON jobs (tenant, (COALESCE(completed_at, updated_at)) DESC, id DESC)
    WHERE status = 'failed';
