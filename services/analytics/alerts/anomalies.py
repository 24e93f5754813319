"""Queue anomalies, each judged against the queue's own EWMA baseline (per queue and job type; backlog per queue).

- failure_rate: failed / finished jobs over the window. The baseline starts at 0 (a queue with no
  history never fails) and takes in each closed minute, weighted by its volume.
- duration: p95 of attempt durations over the window against the EWMA of each closed minute's p95;
  judged only once the baseline has `alert_baseline_min_minutes` minutes of history.
- backlog: waiting jobs now against the EWMA of the backlog sampled once a minute.

A window thinner than `alert_min_volume` is not judged (one failure is not a spike) and counts as
clear. A baseline does not learn while its alert is open, so a lasting problem never becomes normal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.analytics.alerts.judging import Reading, ewma
from services.analytics.alerts.store import Alert, Condition
from shared.analytics.histogram import percentile
from shared.settings import AnalyticsSettings

FAILURE = "failure_rate"
DURATION = "duration"
BACKLOG = "backlog"
SEVERITY = {FAILURE: "critical", DURATION: "warning", BACKLOG: "warning"}


def key_of(kind: str, queue: str, job_type: str | None = None) -> str:
    """The condition key of an anomaly (`alerts.condition_key`, `alert_conditions`)."""
    return f"{kind}|{queue}" if job_type is None else f"{kind}|{queue}|{job_type}"


@dataclass
class Figures:
    """What finished in some span, for one queue and job type (or one rule's scope)."""

    completed: int = 0
    failed: int = 0
    duration_count: int = 0
    hist: list[int] = field(default_factory=list)
    tenants: set[str] = field(default_factory=set)

    def add(self, row: asyncpg.Record) -> None:
        """Sum in a row of store.WINDOW or store.MINUTES."""
        self.completed += row["completed"]
        self.failed += row["failed"]
        self.duration_count += row["duration_count"]
        theirs = list(row["duration_hist"] or [])
        self.hist = [(self.hist[i] if i < len(self.hist) else 0) + (theirs[i] if i < len(theirs) else 0)
                     for i in range(max(len(self.hist), len(theirs)))]
        if "tenant" in row.keys():
            self.tenants.add(row["tenant"])

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.hist, 0.95)


def by_queue_and_type(rows: Iterable[asyncpg.Record]) -> dict[tuple[str, str], Figures]:
    """Window rows summed over tenants."""
    out: dict[tuple[str, str], Figures] = defaultdict(Figures)
    for row in rows:
        out[(row["queue"], row["job_type"])].add(row)
    return out


def learn_minutes(minutes: Iterable[asyncpg.Record], states: dict[str, Condition], open_keys: set[str],
                  s: AnalyticsSettings) -> None:
    """Feed each closed minute not yet taken in to the failure and duration baselines (in bucket order)."""
    for row in minutes:
        figures = Figures()
        figures.add(row)
        queue, job_type, bucket = row["queue"], row["job_type"], row["bucket"]
        for kind, value, volume in ((FAILURE, figures.failure_rate, figures.finished),
                                    (DURATION, figures.p95_ms, figures.duration_count)):
            key = key_of(kind, queue, job_type)
            state = states.setdefault(key, Condition(key))
            if state.last_bucket is not None and bucket <= state.last_bucket:
                continue
            state.last_bucket = bucket
            if value is None or key in open_keys:
                continue
            first_duration = kind == DURATION and state.baseline is None
            state.baseline = value if first_duration else ewma(state.baseline, value, s.alert_ewma_alpha,
                                                                 volume / s.alert_min_volume)
            state.samples += 1


def failure_reading(queue: str, job_type: str, f: Figures, state: Condition, s: AnalyticsSettings) -> Reading:
    """Opens at baseline + open delta; clears below baseline + resolve delta, or when too thin to judge."""
    base = state.baseline or 0.0
    rate = f.failure_rate
    judged = rate is not None and f.finished >= s.alert_min_volume
    details = {"failureRate": _r(rate), "baseline": _r(base), "failed": f.failed, "completed": f.completed,
               "windowMinutes": s.alert_window_minutes}
    return Reading(
        key_of(FAILURE, queue, job_type), FAILURE, queue, job_type, SEVERITY[FAILURE],
        breaching=judged and rate is not None and rate >= base + s.alert_failure_open_delta,
        cleared=not judged or (rate is not None and rate < base + s.alert_failure_resolve_delta),
        details=details, tenants=sorted(f.tenants),
    )


def duration_reading(queue: str, job_type: str, f: Figures, state: Condition, s: AnalyticsSettings) -> Reading:
    """p95 over `factor` times the baseline p95 (and over it by `alert_duration_min_ms`), once the baseline is grown."""
    base, p95 = state.baseline, f.p95_ms
    judged = (base is not None and p95 is not None and f.duration_count >= s.alert_min_volume
              and state.samples >= s.alert_baseline_min_minutes)
    breaching = cleared = False
    if judged and base is not None and p95 is not None:
        breaching = p95 >= base * s.alert_duration_open_factor and p95 - base >= s.alert_duration_min_ms
        cleared = p95 < base * s.alert_duration_resolve_factor or p95 - base < s.alert_duration_min_ms
    details = {"p95DurationMs": _r(p95), "baselineP95Ms": _r(base), "count": f.duration_count,
               "windowMinutes": s.alert_window_minutes}
    return Reading(key_of(DURATION, queue, job_type), DURATION, queue, job_type, SEVERITY[DURATION],
                   breaching=breaching, cleared=not judged or cleared, details=details, tenants=sorted(f.tenants))


def backlog_reading(queue: str, backlog: int, tenants: set[str], state: Condition, is_open: bool, minute: datetime,
                    s: AnalyticsSettings) -> Reading:
    """Waiting jobs over `factor` times the baseline (and `alert_backlog_min`); the baseline samples once a minute."""
    base = state.baseline
    judged = base is not None and state.samples >= s.alert_baseline_min_minutes
    breaching = cleared = False
    if judged and base is not None:
        breaching = backlog >= max(s.alert_backlog_min, base * s.alert_backlog_open_factor)
        cleared = backlog < max(s.alert_backlog_min / 2, base * s.alert_backlog_resolve_factor)
    if (state.last_bucket is None or minute > state.last_bucket) and not is_open:
        state.baseline = float(backlog) if base is None else ewma(base, backlog, s.alert_ewma_alpha)
        state.samples += 1
        state.last_bucket = minute
    key = key_of(BACKLOG, queue)
    return Reading(key, BACKLOG, queue, None, SEVERITY[BACKLOG], breaching=breaching, cleared=not judged or cleared,
                   details={"backlog": backlog, "baseline": _r(base)}, tenants=sorted(tenants))


def anomaly_readings(window: list[asyncpg.Record], backlog: list[asyncpg.Record], states: dict[str, Condition],
                     opened: dict[str, Alert], minute: datetime, s: AnalyticsSettings) -> list[Reading]:
    """Every anomaly reading of this tick: each queue seen in the window or the backlog, and each open alert."""
    readings: list[Reading] = []
    for (queue, job_type), figures in by_queue_and_type(window).items():
        for kind, judge in ((FAILURE, failure_reading), (DURATION, duration_reading)):
            key = key_of(kind, queue, job_type)
            readings.append(judge(queue, job_type, figures, states.setdefault(key, Condition(key)), s))
    waiting: dict[str, int] = defaultdict(int)
    tenants: dict[str, set[str]] = defaultdict(set)
    for row in backlog:
        waiting[row["queue"]] += row["backlog"]
        tenants[row["queue"]].add(row["tenant"])
    for queue in waiting.keys() | {a.queue for a in opened.values() if a.kind == BACKLOG and a.queue is not None}:
        key = key_of(BACKLOG, queue)
        readings.append(backlog_reading(queue, waiting.get(queue, 0), tenants[queue],
                                        states.setdefault(key, Condition(key)), key in opened, minute, s))
    seen = {r.key for r in readings}
    for key, alert in opened.items():
        # An open anomaly whose queue went quiet: nothing to judge, which counts as clear.
        if alert.kind in (FAILURE, DURATION) and key not in seen:
            readings.append(Reading(key, alert.kind, alert.queue, alert.job_type, alert.severity,
                                    breaching=False, cleared=True, details={"windowMinutes": s.alert_window_minutes}))
    return readings


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
