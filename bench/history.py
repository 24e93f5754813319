"""A synthetic history of jobs for bench/seed_history.py: job and attempt rows, and the aggregates the
analytics service would have computed from their events (per minute, hour and day, and per worker).

Made up per job type: a log-normal attempt duration, a share of attempts that fail (retried up to
`max_attempts`), a few cancellations before the start, log-normal waits, exponential retry backoff.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.analytics.histogram import MAX_ATTEMPT_SLOT, SLOTS, attempt_slot, bucket_of

TENANT = "default"
WORKERS = tuple(f"seed-worker-{i}" for i in range(1, 9))
MAX_ATTEMPTS = 3
CANCELLED_SHARE = 0.01
ERROR_TYPES = ("TimeoutError", "ConnectionError", "ValueError", "HTTPError")


@dataclass(frozen=True)
class JobKind:
    """One queue's job type: its share of the jobs, median duration and spread, and attempt failure rate."""

    queue: str
    job_type: str
    weight: float
    median_ms: float
    sigma: float
    fail_rate: float


KINDS = (
    JobKind("emails", "send_email", 30, 120, 0.6, 0.03),
    JobKind("emails", "render_template", 10, 15, 0.5, 0.005),
    JobKind("webhooks", "deliver", 20, 250, 1.0, 0.08),
    JobKind("reports", "build_report", 5, 8000, 0.8, 0.05),
    JobKind("reports", "export_csv", 5, 2500, 0.7, 0.02),
    JobKind("images", "resize", 15, 600, 0.5, 0.01),
    JobKind("images", "thumbnail", 10, 90, 0.4, 0.01),
    JobKind("billing", "charge", 4, 900, 0.9, 0.12),
    JobKind("search", "reindex", 1, 60000, 0.6, 0.1),
)

# Layout of one aggregate accumulator (a flat list of ints, one per tenant, queue, job type and bucket).
COUNT_NAMES = ("submitted", "started", "completed", "failed", "retried", "cancelled")
SUM_NAMES = ("duration_ms_sum", "duration_count", "wait_ms_sum", "wait_count")
(SUBMITTED, STARTED, COMPLETED, FAILED, RETRIED, CANCELLED,
 DURATION_SUM, DURATION_COUNT, WAIT_SUM, WAIT_COUNT) = range(10)
DURATION_HIST = 10
WAIT_HIST = DURATION_HIST + SLOTS
COMPLETED_BY = WAIT_HIST + SLOTS
RETRIED_BY = COMPLETED_BY + MAX_ATTEMPT_SLOT
FAILED_BY = RETRIED_BY + MAX_ATTEMPT_SLOT
WIDTH = FAILED_BY + MAX_ATTEMPT_SLOT


@dataclass
class Aggregates:
    """Per-minute figures keyed by (queue, job type, minute since the epoch), errors beside, and per-worker
    minutes [completed, failed, retried, busy_ms]."""

    minutes: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    errors: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=dict)
    workers: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def at(self, kind: JobKind, t: float) -> list[int]:
        key = (kind.queue, kind.job_type, int(t // 60))
        row = self.minutes.get(key)
        if row is None:
            row = self.minutes[key] = [0] * WIDTH
        return row

    def error(self, kind: JobKind, t: float, error_type: str) -> None:
        per = self.errors.setdefault((kind.queue, kind.job_type, int(t // 60)), {})
        per[error_type] = per.get(error_type, 0) + 1

    def worker(self, worker_id: str, t: float, slot: int, busy_ms: int) -> None:
        row = self.workers.setdefault((worker_id, int(t // 60)), [0, 0, 0, 0])
        row[slot] += 1
        row[3] += busy_ms


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def generate(jobs: int, days: float, rng: random.Random, agg: Aggregates, end: float,
             chunk: int = 50_000) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """Chunks of (job rows, attempt rows), adding every event to `agg` as analytics would count it."""
    start = end - days * 86400
    kinds = rng.choices(KINDS, weights=[k.weight for k in KINDS], k=jobs)
    job_rows: list[tuple[object, ...]] = []
    attempt_rows: list[tuple[object, ...]] = []
    for kind in kinds:
        job_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        created = start + rng.random() * (end - start - 600)  # the last job leaves 10 minutes to finish
        agg.at(kind, created)[SUBMITTED] += 1
        if rng.random() < CANCELLED_SHARE:
            cancelled = created + rng.expovariate(1 / 5)
            agg.at(kind, cancelled)[CANCELLED] += 1
            job_rows.append((job_id, TENANT, kind.queue, kind.job_type, "cancelled", 5, "{}", MAX_ATTEMPTS, 0, 0, 5,
                             None, when(created), when(cancelled), None, when(cancelled), "cancelled"))
            continue
        due, attempt, error = created, 0, None
        while True:
            attempt += 1
            wait_ms = rng.lognormvariate(math.log(40), 1.0)
            started = due + wait_ms / 1000
            duration_ms = int(rng.lognormvariate(math.log(kind.median_ms), kind.sigma))
            ended = started + duration_ms / 1000
            worker = WORKERS[rng.getrandbits(3)]
            row = agg.at(kind, started)
            row[STARTED] += 1
            row[WAIT_SUM] += int(wait_ms)
            row[WAIT_COUNT] += 1
            row[WAIT_HIST + bucket_of(wait_ms)] += 1
            row = agg.at(kind, ended)
            row[DURATION_SUM] += duration_ms
            row[DURATION_COUNT] += 1
            row[DURATION_HIST + bucket_of(duration_ms)] += 1
            slot = attempt_slot(attempt) - 1
            ok = rng.random() >= kind.fail_rate
            if ok:
                row[COMPLETED] += 1
                row[COMPLETED_BY + slot] += 1
                status, outcome, error = "completed", 0, None
            else:
                error_type = ERROR_TYPES[rng.getrandbits(2)]
                error = f'{{"type": "{error_type}", "message": "synthetic", "retryable": true}}'
                agg.error(kind, ended, error_type)
                last = attempt >= MAX_ATTEMPTS
                row[FAILED if last else RETRIED] += 1
                row[(FAILED_BY if last else RETRIED_BY) + slot] += 1
                status, outcome = ("failed", 1) if last else ("retrying", 2)
            agg.worker(worker, ended, outcome, duration_ms)
            attempt_rows.append((job_id, attempt, worker, "completed" if ok else "failed", when(started),
                                 when(ended), error))
            if status != "retrying":
                break
            due = ended + min(2 ** (attempt - 1), 60) * (0.5 + rng.random() / 2)
        job_rows.append((job_id, TENANT, kind.queue, kind.job_type, status, 5, "{}", MAX_ATTEMPTS, attempt, attempt,
                         4, error, when(created), when(ended), when(started), when(ended), None))
        if len(job_rows) >= chunk:
            yield job_rows, attempt_rows
            job_rows, attempt_rows = [], []
    if job_rows:
        yield job_rows, attempt_rows


JOB_COLUMNS = ("id", "tenant", "queue", "job_type", "status", "priority", "payload", "max_attempts", "attempts",
               "state_attempt", "state_rank", "error", "created_at", "updated_at", "started_at", "completed_at",
               "cancel_reason")
ATTEMPT_COLUMNS = ("job_id", "attempt", "worker_id", "status", "started_at", "ended_at", "error")
