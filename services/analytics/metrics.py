"""Prometheus metrics of the analytics service (default registry, served on /metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

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
RETENTION_DELETED = Counter(
    "conveyor_analytics_retention_deleted_total", "Rows the retention cleaner deleted, by table", ["table"]
)


class Lag:
    """How far recording is behind the stream: the age of the oldest record of the batches in hand.

    While batches are being recorded the age keeps growing; between batches it holds the age the
    last batch's oldest record had when that batch was committed to Postgres (0 before any), until
    a fetch finds nothing new with no batch in hand: then recording is caught up, and the lag is 0.
    """

    def __init__(self) -> None:
        self._in_hand: dict[int, float | None] = {}  # batch -> its oldest record's time (epoch s)
        self._batches = 0
        self._last_s = 0.0

    def begin(self, timestamps_ms: Iterable[int]) -> int:
        """A batch with these Kafka record timestamps (epoch ms; ≤ 0 means unknown) is in hand; its number."""
        known = [t for t in timestamps_ms if t > 0]
        self._batches += 1
        self._in_hand[self._batches] = min(known) / 1000 if known else None
        return self._batches

    def end(self, batch: int) -> None:
        """That batch is recorded (or given up, to be fetched again)."""
        oldest = self._in_hand.pop(batch, None)
        if oldest is not None:
            self._last_s = max(0.0, time.time() - oldest)

    def idle(self) -> None:
        """A fetch came back empty: nothing is waiting to be recorded, unless a batch is still in hand."""
        if not self._in_hand:
            self._last_s = 0.0

    def seconds(self) -> float:
        """The gauge's value now."""
        known = [t for t in self._in_hand.values() if t is not None]
        if known:
            return max(0.0, time.time() - min(known))
        return self._last_s


LAG = Lag()
LAG_SECONDS = Gauge(
    "conveyor_analytics_lag_seconds",
    "Age of the oldest record of the batches being recorded (between batches: that age when the last one"
    " committed; 0 once a fetch finds nothing new)",
)
LAG_SECONDS.set_function(LAG.seconds)
