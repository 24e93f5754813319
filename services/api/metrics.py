"""Prometheus metrics of the API (default registry, so the shared /metrics route serves them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS_SUBMITTED = Counter(
    "conveyor_api_jobs_submitted_total", "Jobs stored by the API", ["kind"]  # kind: single | batch
)
IDEMPOTENT_REPLAYS = Counter("conveyor_api_idempotent_replays_total", "Submissions answered with an existing job")
BATCHES_SUBMITTED = Counter("conveyor_api_batches_submitted_total", "Batches stored by the API")
JOBS_CANCELLED = Counter("conveyor_api_jobs_cancelled_total", "Cancel requests by outcome", ["outcome"])
JOBS_RETRIED = Counter("conveyor_api_jobs_retried_total", "Manual retries accepted")
REQUESTS = Counter("conveyor_api_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "conveyor_api_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
