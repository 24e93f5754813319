"""shared/cron.py and the scheduler's misfire plan: fire times in a zone with DST, validation, policies."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.cron import idempotency_key, plan_fires
from shared.cron import CronError, check_cron, fire_times, next_fire, previous_fire, zone

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
GRACE = timedelta(seconds=30)


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.integers(1, 30).map(lambda step: f"*/{step}"),
        st.lists(number, min_size=1, max_size=3, unique=True).map(lambda xs: ",".join(map(str, sorted(xs)))),
    )


CRONS = st.tuples(_field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6)).map(" ".join)
STARTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))


def _in_gap(when: datetime, tz_name: str) -> bool:
    # A wall time the zone skipped (spring forward) fires at the first minute after the gap.
    tz = zone(tz_name)
    local = when.astimezone(tz)
    return local.utcoffset() != (when - timedelta(hours=1)).astimezone(tz).utcoffset()


@settings(max_examples=200, deadline=None)
@given(cron=CRONS, tz_name=st.sampled_from(ZONES), start=STARTS)
def test_fire_times_match_the_cron_and_strictly_increase(cron: str, tz_name: str, start: datetime) -> None:
    times = fire_times(check_cron(cron), zone(tz_name), start, 5)
    assert len(times) == 5
    assert times[0] > start
    assert all(a < b for a, b in itertools.pairwise(times))
    for when in times:
        assert when.tzinfo is UTC and when.second == 0 and when.microsecond == 0
        local = when.astimezone(zone(tz_name)).replace(tzinfo=None)
        assert croniter.match(cron, local) or _in_gap(when, tz_name), (cron, tz_name, when)


def test_daylight_saving_in_berlin() -> None:
    berlin = zone("Europe/Berlin")
    # 02:30 does not exist on 2026-03-29: that day fires at 03:00 CEST (01:00 UTC), once.
    spring = fire_times("30 2 * * *", berlin, datetime(2026, 3, 28, tzinfo=UTC), 3)
    assert [t.isoformat() for t in spring] == [
        "2026-03-28T01:30:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00",
    ]
    # Every 30 minutes across the fall back: the repeated hour fires in both offsets, 30 min apart in UTC.
    fall = fire_times("*/30 * * * *", berlin, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 4)
    assert [t.isoformat() for t in fall] == [
        "2026-10-25T00:00:00+00:00", "2026-10-25T00:30:00+00:00", "2026-10-25T01:00:00+00:00",
        "2026-10-25T01:30:00+00:00",
    ]
    # 09:00 local is 13:00 UTC in summer, 14:00 in winter in New York (clocks go back on 2026-11-01).
    ny = fire_times("0 9 * * *", zone("America/New_York"), datetime(2026, 10, 31, 12, tzinfo=UTC), 3)
    assert [t.hour for t in ny] == [13, 14, 14]


@pytest.mark.parametrize("bad", ["* * * *", "* * * * * *", "@daily", "61 * * * *", "0 0 30 2 *", "H * * * *", ""])
def test_bad_cron_names_the_cron_field(bad: str) -> None:
    with pytest.raises(CronError) as caught:
        check_cron(bad)
    assert caught.value.field == "cron"


def test_unknown_zone_names_the_timezone_field() -> None:
    for bad in ("Mars/Olympus_Mons", "../etc/passwd", "Europe/"):
        with pytest.raises(CronError) as caught:
            zone(bad)
        assert caught.value.field == "timezone"


def test_next_and_previous_fire() -> None:
    at = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert next_fire("*/5 * * * *", zone("UTC"), at) == at + timedelta(minutes=5)
    assert previous_fire("*/5 * * * *", zone("UTC"), at) == at
    assert previous_fire("*/5 * * * *", zone("UTC"), at - timedelta(seconds=1)) == at - timedelta(minutes=5)


def test_an_on_time_fire_fires_once() -> None:
    due = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    for policy in ("skip", "run_once"):
        fires = plan_fires("* * * * *", "UTC", policy, due, due + timedelta(milliseconds=300), GRACE)
        assert (fires.fire_at, fires.skipped, fires.next_fire_at) == ([due], 0, due + timedelta(minutes=1))


def test_misfire_after_downtime() -> None:
    due = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    now = due + timedelta(minutes=10, seconds=40)  # down for 11 fire times, the last 40 s late
    skip = plan_fires("* * * * *", "UTC", "skip", due, now, GRACE)
    assert (skip.fire_at, skip.skipped, skip.last_skipped) == ([], 11, due + timedelta(minutes=10))
    once = plan_fires("* * * * *", "UTC", "run_once", due, now, GRACE)
    assert (once.fire_at, once.skipped) == ([due + timedelta(minutes=10)], 10)
    assert once.last_skipped == due + timedelta(minutes=9)
    assert skip.next_fire_at == once.next_fire_at == due + timedelta(minutes=11)
    # Down, but back within the grace of the latest time: that one still fires under `skip`.
    late = plan_fires("* * * * *", "UTC", "skip", due, due + timedelta(minutes=10, seconds=5), GRACE)
    assert (late.fire_at, late.skipped) == ([due + timedelta(minutes=10)], 10)


def test_idempotency_key_names_the_fire() -> None:
    import uuid

    sid = uuid.UUID(int=1)
    assert idempotency_key(sid, datetime(2026, 1, 1, 10, tzinfo=UTC)) == f"cron:{sid}:2026-01-01T10:00:00+00:00"
