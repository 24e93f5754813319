"""Cron math both services share: 5-field expressions in a time zone, and their fire times (DST by croniter).

Every time in and out is timezone-aware; fire times come back in UTC. croniter walks the wall clock
of the schedule's zone: a time skipped by a spring-forward fires at the first existing minute after
it, and an hour repeated by a fall-back fires in both of its offsets (strictly increasing in UTC).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

PREVIEW_COUNT = 5


class CronError(ValueError):
    """An expression or zone that cannot schedule anything; `field` names the request field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. `Europe/Berlin`, `UTC`); CronError('timezone') for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError("timezone", f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def check_cron(expr: str) -> str:
    """The expression, if it is 5-field cron that fires at all; CronError('cron') otherwise."""
    fields = expr.split()
    # croniter also takes seconds, years, macros (@daily) and hashes (H): DESIGN §5 allows 5 fields only.
    if len(fields) != 5 or any(f.startswith("@") for f in fields):
        raise CronError("cron", "must be 5 fields: minute hour day-of-month month day-of-week")
    if not croniter.is_valid(expr):
        raise CronError("cron", f"not a valid cron expression: {expr!r}")
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:  # e.g. `0 0 30 2 *`: valid fields, no such day
        raise CronError("cron", f"never fires: {expr!r}") from None
    return " ".join(fields)


def iter_fire_times(expr: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, in UTC, in order (endless; stops only if the cron never fires again)."""
    walker = croniter(expr, after.astimezone(tz))
    while True:
        try:
            when: datetime = walker.get_next(datetime)
        except CroniterBadDateError:
            return
        yield when.astimezone(UTC)


def fire_times(expr: str, tz: ZoneInfo, after: datetime, count: int = PREVIEW_COUNT) -> list[datetime]:
    """The first `count` fire times strictly after `after`, in UTC."""
    out: list[datetime] = []
    for when in iter_fire_times(expr, tz, after):
        out.append(when)
        if len(out) == count:
            break
    return out


def next_fire(expr: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (None if there is none)."""
    return next(iter_fire_times(expr, tz, after), None)


def previous_fire(expr: str, tz: ZoneInfo, at: datetime) -> datetime | None:
    """The last fire time at or before `at` (fire times fall on whole minutes), in UTC."""
    ceiling = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    try:
        when: datetime = croniter(expr, ceiling.astimezone(tz)).get_prev(datetime)
    except CroniterBadDateError:
        return None
    return when.astimezone(UTC)
