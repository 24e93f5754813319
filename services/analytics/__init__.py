"""analytics: the audit log (`job_events`) and per-queue per-minute counters, fed from every job topic."""
