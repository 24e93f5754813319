"""SQL of the batch routes."""

from __future__ import annotations

BATCH_COUNTS = """
SELECT b.total,
       count(j.id) FILTER (WHERE j.status IN ('pending', 'blocked', 'scheduled', 'queued', 'retrying')) AS pending,
       count(j.id) FILTER (WHERE j.status = 'running') AS running,
       count(j.id) FILTER (WHERE j.status = 'completed') AS completed,
       count(j.id) FILTER (WHERE j.status = 'failed') AS failed,
       count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled
FROM job_batches b LEFT JOIN jobs j ON j.batch_id = b.id AND j.tenant = b.tenant
WHERE b.id = $1 AND b.tenant = $2
GROUP BY b.id, b.total
"""
