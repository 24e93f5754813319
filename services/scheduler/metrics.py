"""Prometheus metrics of the scheduler (default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DISPATCHED = Counter(
    "conveyor_scheduler_dispatched_total",
    "Attempts handed to a ready set (dispatched events), by what triggered them",
    ["source"],
)
PROJECTION_BATCH = Histogram(
    "conveyor_scheduler_projection_batch_size",
    "Worker and cancellation events projected per consumer batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
RECONCILED = Counter(
    "conveyor_scheduler_reconciled_total",
    "Jobs repaired by reconciliation, by kind",
    ["kind"],
)
LEASES_EXPIRED = Counter(
    "conveyor_scheduler_leases_expired_total",
    "Worker leases that ran out, by outcome (retry or exhausted)",
    ["outcome"],
)
CONSUMER_LAG = Gauge(
    "conveyor_scheduler_consumer_lag_seconds",
    "Age of the oldest event in the last consumed batch when it was handled",
)
BATCHES_COMPLETED = Counter(
    "conveyor_scheduler_batches_completed_total",
    "Batches whose last job ended (one batch_completed event each)",
)
