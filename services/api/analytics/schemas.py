"""Response models of the analytics routes (what OpenAPI documents; the routes answer plain dicts)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from services.api.queues.schemas import QueueCounts
from shared.models import CamelModel


class EventCounts(CamelModel):
    """Events of the window by type: jobs submitted, attempts started, jobs completed, attempts retried,
    jobs failed for good, jobs cancelled."""

    submitted: int
    started: int
    completed: int
    failed: int
    retried: int
    cancelled: int


class Percentiles(CamelModel):
    """Read from the window's histogram (ms, within about 20 %); null when it is empty."""

    p50: float | None
    p95: float | None
    p99: float | None


class QueueMetrics(CamelModel):
    """One queue over the window, with its current backlog and capacity hints."""

    queue: str
    counts: EventCounts
    success_rate: float | None
    duration_ms: Percentiles
    wait_ms: Percentiles
    backlog: int
    oldest_waiting_age_ms: int | None
    throughput_per_min: float
    workers_needed: int | None
    drain_time_s: float | None


class QueueMetricsList(CamelModel):
    """GET /metrics/queues."""

    items: list[QueueMetrics]


class AttemptSuccess(CamelModel):
    """Attempts numbered `attempt` that finished, and the share that completed (the last number, 20, also
    holds every later attempt)."""

    attempt: int
    finished: int
    success_rate: float | None


class JobTypeMetrics(CamelModel):
    """One job type of one queue over the window."""

    queue: str
    job_type: str
    counts: EventCounts
    success_rate: float | None
    duration_ms: Percentiles
    success_rate_by_attempt: list[AttemptSuccess]


class JobTypeMetricsList(CamelModel):
    """GET /metrics/job-types."""

    items: list[JobTypeMetrics]


class HistogramBucket(CamelModel):
    """Finished attempts whose duration is at most `le` ms and above the previous bucket's (`le` null: +Inf)."""

    le: int | None
    count: int


class DurationHistogram(CamelModel):
    """GET /metrics/job-duration-histogram."""

    buckets: list[HistogramBucket]


class TimelinePoint(CamelModel):
    """One step of the timeline, starting at `at`."""

    at: datetime
    submitted: int
    completed: int
    failed: int
    retried: int


class Timeline(CamelModel):
    """GET /metrics/jobs/timeline."""

    items: list[TimelinePoint]


class StatusTotals(QueueCounts):
    """Jobs by status: finished ones since the beginning, unfinished ones now."""


class QueueStats(CamelModel):
    """One queue of GET /stats over the window."""

    queue: str
    counts: EventCounts
    throughput_per_min: float
    error_rate: float | None


class Stats(CamelModel):
    """GET /stats."""

    totals: StatusTotals
    queues: list[QueueStats]
    throughput_per_min: float
    error_rate: float | None


class WorkerMetrics(CamelModel):
    """One worker over the window."""

    worker_id: str
    host: str | None
    status: Literal["active", "draining", "gone"]
    concurrency: int | None
    completed: int
    failed: int
    retried: int
    busy_ms: int
    utilisation: float | None


class WorkerMetricsList(CamelModel):
    """GET /metrics/workers."""

    items: list[WorkerMetrics]
