"""Prometheus metrics of the worker (served on /metrics by the health server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_PROCESSED = Counter(
    "conveyor_worker_jobs_processed_total",
    "Attempts finished by this worker, by outcome (completed, retry, failed, cancelled, lost, shutdown).",
    ["queue", "outcome"],
)
HANDLER_DURATION = Histogram(
    "conveyor_worker_handler_duration_seconds",
    "Wall time of handler runs.",
    ["job_type"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
IN_FLIGHT = Gauge("conveyor_worker_in_flight_jobs", "Jobs this worker holds a lease on.")
PUBLISH_RETRIES = Counter(
    "conveyor_worker_publish_retries_total", "Event publishes retried because Kafka did not acknowledge."
)
LEASES_LOST = Counter("conveyor_worker_leases_lost_total", "Leases another worker took over after expiry.")
PROGRESS_DROPPED = Counter(
    "conveyor_worker_progress_dropped_total", "Progress reports dropped because Kafka did not acknowledge them."
)
LATE_RESULTS = Counter(
    "conveyor_worker_late_results_total",
    "Attempts that ended after their lease was gone: the result was reported as rejected, never applied.",
    ["outcome"],
)
RELEASES_GONE = Counter(
    "conveyor_worker_releases_gone_total",
    "Leases already gone when the worker released them after publishing the outcome (the scheduler"
    " records such a result as late).",
)
