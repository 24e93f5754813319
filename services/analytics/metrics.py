"""Prometheus metrics of the analytics service (default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_RECORDED = Counter(
    "conveyor_analytics_events_recorded_total", "Events appended to the audit log, by event type", ["type"]
)
DUPLICATES_SKIPPED = Counter(
    "conveyor_analytics_duplicates_skipped_total", "Redelivered events that were already in the audit log"
)
EVENTS_REJECTED = Counter(
    "conveyor_analytics_events_rejected_total", "Events Postgres refused as invalid data (logged and skipped)"
)
RECORDS_UNDECODABLE = Counter(
    "conveyor_analytics_records_undecodable_total", "Kafka records on job topics that are not envelopes"
)
BATCH_SECONDS = Histogram(
    "conveyor_analytics_batch_seconds", "Time to record one consumed batch in Postgres",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
