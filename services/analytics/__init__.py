"""analytics: the audit log (`job_events`) and its aggregates (stats_* tables), fed from every job topic."""
