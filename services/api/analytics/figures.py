"""The bodies of the analytics routes, built from the rows of services.api.store.metrics.

Rows come per queue and job type; a queue's figures add its job types' rows up (counts and histogram
buckets are plain sums). Percentiles are read from the summed histograms (shared.analytics.histogram:
√2-spaced buckets, so a percentile is within about 20 % of the exact value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.api.analytics.capacity import Rates, drain_time_s, workers_needed
from services.api.analytics.windows import Span
from services.api.store.metrics import BY_ATTEMPT, COUNTS, HISTOGRAMS, SUMS, Live
from services.api.store.queues import BACKLOG
from shared.analytics.histogram import BOUNDS_MS, percentile
from shared.models import JobStatus

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
ARRAYS = (*HISTOGRAMS, *BY_ATTEMPT)


@dataclass
class Totals:
    """Summed figures of some aggregate rows (one queue, one job type, or everything)."""

    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMS, 0))
    arrays: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name in ARRAYS})

    def add(self, row: Mapping[str, Any]) -> None:
        """Add one row's sums and arrays (element-wise)."""
        for name in SUMS:
            self.sums[name] += int(row[name])
        for name in ARRAYS:
            mine, theirs = self.arrays[name], list(row[name] or [])
            mine.extend([0] * (len(theirs) - len(mine)))
            for i, n in enumerate(theirs):
                mine[i] += int(n)

    @property
    def counts(self) -> dict[str, int]:
        """Events by type over the window."""
        return {name: self.sums[name] for name in COUNTS}

    def quantiles(self, histogram: str) -> dict[str, float | None]:
        """p50/p95/p99 in ms of a summed histogram (None when empty)."""
        counts = self.arrays[histogram]
        return {key: _rounded(percentile(counts, q)) for key, q in QUANTILES.items()}

    def success_rate(self) -> float | None:
        """Completed among the jobs that finished (completed or failed for good); None when none did."""
        return _ratio(self.sums["completed"], self.sums["completed"] + self.sums["failed"])

    def error_rate(self) -> float | None:
        """Failed for good among the jobs that finished; None when none did."""
        return _ratio(self.sums["failed"], self.sums["completed"] + self.sums["failed"])

    def throughput_per_min(self, span: Span) -> float:
        """Completed jobs per minute over the span."""
        return round(self.sums["completed"] * 60 / span.seconds, 2)

    def rates(self, span: Span) -> Rates:
        """What the capacity hints are computed from."""
        s = self.sums
        return Rates(span.seconds, s["submitted"], s["retried"], s["started"], s["duration_ms_sum"],
                     s["duration_count"])

    def success_by_attempt(self) -> list[dict[str, Any]]:
        """For each attempt number that finished: the share of its attempts that completed."""
        completed, retried, failed = (self.arrays[name] for name in BY_ATTEMPT)
        out = []
        for i in range(max(len(completed), len(retried), len(failed))):
            ok = _at(completed, i)
            finished = ok + _at(retried, i) + _at(failed, i)
            if i > 0 and finished:  # index 0 is unused: attempt n sits at (1-based) index n
                out.append({"attempt": i, "finished": finished, "successRate": _ratio(ok, finished)})
        return out


def _at(values: Sequence[int], i: int) -> int:
    return values[i] if i < len(values) else 0


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def by_key(rows: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple[str, ...], Totals]:
    """Rows summed per the values of `keys` (e.g. per queue), in key order."""
    out: dict[tuple[str, ...], Totals] = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), Totals()).add(row)
    return dict(sorted(out.items()))


# The array of a *_by_attempt column is 1-based in SQL: shift by one so index n is attempt n.
def pad_attempts(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row whose *_by_attempt lists are indexed by attempt number (index 0 unused)."""
    return {**row, **{name: [0, *(row[name] or [])] for name in BY_ATTEMPT}}


@dataclass(frozen=True)
class QueueState:
    """A queue's current backlog (pending, queued, retrying) and its oldest waiting job's age."""

    backlog: int = 0
    oldest_waiting_age_ms: int | None = None


def queue_states(live: Iterable[Live]) -> dict[str, QueueState]:
    """Backlog and oldest waiting age per queue, from the live jobs by status."""
    backlog: dict[str, int] = {}
    oldest: dict[str, int | None] = {}
    for row in live:
        backlog.setdefault(row.queue, 0)
        if row.status in BACKLOG:
            backlog[row.queue] += row.count
        age = row.oldest_waiting_age_ms
        if age is not None:
            seen = oldest.get(row.queue)
            oldest[row.queue] = age if seen is None else max(seen, age)
    return {q: QueueState(n, oldest.get(q)) for q, n in backlog.items()}


def queue_items(rows: Sequence[Mapping[str, Any]], live: Sequence[Live], span: Span,
                target_wait_s: float) -> list[dict[str, Any]]:
    """Items of GET /metrics/queues: queues with events in the window or unfinished jobs now, by name."""
    totals = {key[0]: t for key, t in by_key(rows, "queue").items()}
    states = queue_states(live)
    items = []
    for queue in sorted(set(totals) | set(states)):
        t, state = totals.get(queue, Totals()), states.get(queue, QueueState())
        rates = t.rates(span)
        items.append({
            "queue": queue,
            "counts": t.counts,
            "successRate": t.success_rate(),
            "durationMs": t.quantiles("duration_hist"),
            "waitMs": t.quantiles("wait_hist"),
            "backlog": state.backlog,
            "oldestWaitingAgeMs": state.oldest_waiting_age_ms,
            "throughputPerMin": t.throughput_per_min(span),
            "workersNeeded": workers_needed(rates, state.backlog, target_wait_s),
            "drainTimeS": drain_time_s(rates, state.backlog),
        })
    return items


def job_type_items(rows: Sequence[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Items of GET /metrics/job-types: per queue and job type, slowest p95 first."""
    ranked: list[tuple[float, dict[str, Any]]] = []
    for (queue, job_type), t in by_key((pad_attempts(r) for r in rows), "queue", "job_type").items():
        durations = t.quantiles("duration_hist")
        ranked.append((durations["p95"] if durations["p95"] is not None else -1.0, {
            "queue": queue, "jobType": job_type, "counts": t.counts, "successRate": t.success_rate(),
            "durationMs": durations, "successRateByAttempt": t.success_by_attempt(),
        }))
    # Slowest first (a stable sort keeps queue, job type order among equals); no finished attempt: last.
    ranked.sort(key=lambda pair: -pair[0])
    return [item for _, item in ranked[:limit]]


def histogram_buckets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Buckets of GET /metrics/job-duration-histogram: every bucket, ascending, its own count, +Inf last."""
    t = Totals()
    for row in rows:
        t.add(row)
    counts = t.arrays["duration_hist"]
    bounds: list[int | None] = [*BOUNDS_MS, None]
    return [{"le": le, "count": _at(counts, i)} for i, le in enumerate(bounds)]


def stats_body(rows: Sequence[Mapping[str, Any]], live: Sequence[Live], all_time: Mapping[str, Any],
               span: Span) -> dict[str, Any]:
    """GET /stats: jobs by status (finished ones since the beginning, the rest now), and the window's
    per-queue counts, throughput and error rate."""
    totals = dict.fromkeys((s.value for s in JobStatus), 0)
    for row in live:
        totals[row.status] = totals.get(row.status, 0) + row.count
    for status in ("completed", "failed", "cancelled"):
        totals[status] = int(all_time[status])
    everything = Totals()
    queues = []
    for (queue,), t in by_key(rows, "queue").items():
        everything.add({**t.sums, **t.arrays})
        queues.append({"queue": queue, "counts": t.counts, "throughputPerMin": t.throughput_per_min(span),
                       "errorRate": t.error_rate()})
    return {"totals": totals, "queues": queues, "throughputPerMin": everything.throughput_per_min(span),
            "errorRate": everything.error_rate()}
