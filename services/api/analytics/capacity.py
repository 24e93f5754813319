"""Capacity hints of a queue by Little's law: how many concurrent slots keep up, how long the backlog lasts.

Rates are measured over the request's window:
- arrivals: attempts that become due, `submitted + retried` per second (a retry is one more attempt);
- service: the mean attempt duration (`duration_ms_sum / duration_count`, finished attempts);
- drain: attempts started per second.

Little's law (L = λ·W) gives the slots busy on average at arrival rate λ and mean service time S: λ·S.
To also clear the current backlog within the target wait, the rate must rise by backlog / target:
slots = ceil((λ + backlog / target) · S). Both hints are estimates (means, not tails), and None when
there is no measurement to base them on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TARGET_WAIT_S = 60.0


@dataclass(frozen=True)
class Rates:
    """What a window measured for one queue."""

    seconds: float
    submitted: int
    retried: int
    started: int
    duration_ms_sum: int
    duration_count: int

    @property
    def arrivals_per_s(self) -> float:
        """Attempts becoming due per second."""
        return (self.submitted + self.retried) / self.seconds

    @property
    def starts_per_s(self) -> float:
        """Attempts started per second."""
        return self.started / self.seconds

    @property
    def mean_service_s(self) -> float | None:
        """Mean duration of a finished attempt, in seconds (None before any finished)."""
        return self.duration_ms_sum / self.duration_count / 1000 if self.duration_count else None


def workers_needed(rates: Rates, backlog: int, target_wait_s: float = DEFAULT_TARGET_WAIT_S) -> int | None:
    """Concurrency slots that keep up with arrivals and clear `backlog` within `target_wait_s`."""
    service_s = rates.mean_service_s
    if service_s is None:
        return None if backlog else 0
    demand = rates.arrivals_per_s + backlog / target_wait_s
    # A small epsilon so float noise on an exact multiple does not add a slot.
    return math.ceil(demand * service_s - 1e-9)


def drain_time_s(rates: Rates, backlog: int) -> float | None:
    """Seconds until the backlog is gone at the window's rates: backlog / (starts - arrivals) per second;
    0 without a backlog, None when it would never drain (arrivals keep up with starts)."""
    if backlog <= 0:
        return 0.0
    net = rates.starts_per_s - rates.arrivals_per_s
    if net <= 0:
        return None
    return round(backlog / net, 1)
