"""Windows and steps of the analytics routes, and which aggregate rows cover them.

A window ends now and starts at `now - window`, rounded up to a whole minute (to a whole hour for
`7d`): the first, partial minute (hour) is left out, so every row read lies wholly inside the window
and rates divide by exactly the span the rows cover. The current minute's, hour's and day's rows are
partial by nature (they hold what happened so far) and are read as they are.

The span is covered by the coarsest rows that fit (see `Span`): minutes up to the first hour
boundary, hours up to the first day boundary, then days. A 24 h window so reads at most 60 minute rows,
23 hour rows and 2 day rows per queue and job type, however many jobs it saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.api.http.problems import FieldError, ValidationFailed

Window = Literal["15m", "1h", "24h", "7d"]
WINDOWS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
}
DEFAULT_WINDOW: Window = "1h"

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Timeline steps: a number and a unit; the default per window keeps the series between 15 and 168 points.
STEP_PATTERN = r"^[1-9][0-9]{0,3}[mhd]$"
_UNITS = {"m": MINUTE, "h": HOUR, "d": DAY}
DEFAULT_STEPS: dict[str, str] = {"15m": "1m", "1h": "1m", "24h": "15m", "7d": "1h"}
MAX_POINTS = 1440


def ceil_to(at: datetime, unit: timedelta) -> datetime:
    """The first boundary of `unit` (counted from the Unix epoch, UTC) at or after `at`."""
    units = -((EPOCH - at) // unit)  # ceiling division of the elapsed time
    return EPOCH + units * unit


def floor_to(at: datetime, unit: timedelta) -> datetime:
    """The last boundary of `unit` (from the Unix epoch, UTC) at or before `at`."""
    return EPOCH + ((at - EPOCH) // unit) * unit


@dataclass(frozen=True)
class Span:
    """The rows that cover [start, now]: minute rows from `start`, hour rows from `hours_from`, day rows
    from `days_from` (each range ends where the next begins; the last runs to now)."""

    start: datetime
    now: datetime
    hours_from: datetime
    days_from: datetime

    @property
    def seconds(self) -> float:
        """How long the span is (what rates divide by)."""
        return max((self.now - self.start).total_seconds(), 1.0)


def span_of(window: str, now: datetime | None = None) -> Span:
    """The span a window covers, ending now."""
    now = now or datetime.now(UTC)
    start = ceil_to(now - WINDOWS[window], HOUR if WINDOWS[window] > DAY else MINUTE)
    hours_from = ceil_to(start, HOUR)
    return Span(start, now, hours_from, max(ceil_to(start, DAY), hours_from))


def parse_step(raw: str | None, window: str) -> timedelta:
    """A timeline step (`1m`, `15m`, `1h`, `1d` ...) checked against the window; 422 naming `step`."""
    text = raw or DEFAULT_STEPS[window]
    if re.fullmatch(STEP_PATTERN, text) is None:
        raise _bad_step(f"{text!r} is not a step such as 1m, 15m, 1h or 1d")
    step = int(text[:-1]) * _UNITS[text[-1]]
    span = WINDOWS[window]
    if step > span:
        raise _bad_step(f"the step {text} is longer than the window {window}")
    if span / step > MAX_POINTS:
        raise _bad_step(f"the step {text} makes more than {MAX_POINTS} points over {window}; take a longer one")
    if DAY % step and step % DAY:
        raise _bad_step(f"the step {text} neither divides a day nor is a whole number of days")
    if span > DAY and step % HOUR:
        raise _bad_step(f"over {window} the step must be a whole number of hours")
    return step


def _bad_step(message: str) -> ValidationFailed:
    return ValidationFailed(f"invalid step: {message}", errors=[FieldError("step", message)])


def resolution_of(step: timedelta) -> Literal["minute", "hour", "day"]:
    """The coarsest aggregate rows that fit a step exactly."""
    if step % DAY == timedelta(0):
        return "day"
    if step % HOUR == timedelta(0):
        return "hour"
    return "minute"


def step_starts(window: str, step: timedelta, now: datetime | None = None) -> list[datetime]:
    """The starts of the timeline's steps, oldest first: the step holding now and enough before it to
    cover the window (window / step of them, rounded up)."""
    now = now or datetime.now(UTC)
    last = floor_to(now, step)
    count = -(-WINDOWS[window] // step)
    return [last - (count - 1 - i) * step for i in range(count)]
