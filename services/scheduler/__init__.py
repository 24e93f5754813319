"""The scheduler: dispatch into Redis, projection of job events onto Postgres, leases, reconciliation."""
