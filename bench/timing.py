"""When jobs start: a bound queue rate limit (`rateLimited`), delayed jobs (`delayedStartLagMs`) and cron
fires (`cronFireLagMs`). Times are the API's (`startedAt` is the worker's clock, `createdAt` Postgres's);
the bench, the workers and Postgres share one machine, so one clock."""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench import scenarios
from bench.scheduled import configure_queue, unavailable

RATE_QUEUE = "bench-rate"
DELAY_QUEUE = "bench-delay"
CRON_QUEUE = "bench-cron"


def _tag(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


async def _submit(client: aiohttp.ClientSession, jobs: list[dict[str, Any]]) -> str:
    status, body = await scenarios.call(client, "POST", "/api/v1/job-batches", {"jobs": jobs})
    if status != 201:
        raise scenarios.Rejected("POST /job-batches", status, body)
    return str(body["batchId"])


def max_in_any_window(times: list[float], window_s: float) -> int:
    """The most `times` (sorted) in any half-open window [t, t + window_s): the window slides over every
    start, so no edge between fixed buckets can hide a burst."""
    # Whole microseconds (the API's resolution), so float sums cannot move a start across an edge.
    us = [round(t * 1e6) for t in times]
    width = round(window_s * 1e6)
    return max((bisect.bisect_left(us, t + width) - i for i, t in enumerate(us)), default=0)


def delivered_per_second(times: list[float], window_s: float) -> float:
    """Starts per second over the whole windows from the first start that the run fills: a limit of N per
    window delivers exactly N per window there, whether it lets them through in bursts or evenly."""
    if len(times) < 2:
        return 0.0
    whole = int((times[-1] - times[0]) // window_s)
    if whole == 0:
        return round(len(times) / (times[-1] - times[0]), 1)
    counted = bisect.bisect_left([round(t * 1e6) for t in times], round((times[0] + whole * window_s) * 1e6))
    return round(counted / (whole * window_s), 1)


async def rate_limited(api_url: str, key: str, limit: int = 50, period_ms: int = 1000, seconds: float = 8
                       ) -> dict[str, Any]:
    """A backlog of `seconds` worth of no-op jobs under "`limit` per `period_ms`": the most starts in any
    window of the period, and the delivered rate, from the jobs' startedAt."""
    tag = _tag("rate")
    total = int(limit * 1000 / period_ms * seconds)
    async with scenarios.http_client(api_url, key) as client:
        await configure_queue(client, RATE_QUEUE, {"rateLimit": {"limit": limit, "periodMs": period_ms}})
        job = {"queue": RATE_QUEUE, "jobType": "noop", "payload": {}, "tags": [tag]}
        batch = await _submit(client, [job] * total)
        await scenarios.wait_batches(client, [batch], time.perf_counter() + 3 * seconds + 30)
        jobs = await scenarios.jobs_tagged(client, tag)
    starts = sorted(t for j in jobs if (t := scenarios.timestamp(j.get("startedAt"))) is not None)
    window_s = period_ms / 1000
    return {
        "allowedPerSecond": round(limit / window_s, 1),
        "deliveredPerSecond": delivered_per_second(starts, window_s),
        "maxStartsInAnyWindow": max_in_any_window(starts, window_s),
        "limit": limit, "periodMs": period_ms, "jobs": total, "started": len(starts),
        "seconds": round(starts[-1] - starts[0], 2) if starts else 0.0,
    }


async def delayed_start_lag(api_url: str, key: str, jobs: int = 300, spread_s: float = 4.0) -> dict[str, Any]:
    """`jobs` no-op jobs with `scheduledFor` spread evenly over `spread_s` seconds (from 1.5 s after the
    submission, so the batch is stored before the first is due): lag = startedAt - scheduledFor."""
    tag = _tag("delay")
    first = datetime.now(UTC) + timedelta(seconds=1.5)
    due = [first + timedelta(seconds=spread_s * i / jobs) for i in range(jobs)]
    batch_jobs = [{"queue": DELAY_QUEUE, "jobType": "noop", "payload": {}, "tags": [tag],
                   "scheduledFor": at.isoformat(timespec="milliseconds")} for at in due]
    async with scenarios.http_client(api_url, key) as client:
        batch = await _submit(client, batch_jobs)
        await scenarios.wait_batches(client, [batch], time.perf_counter() + spread_s + 60)
        rows = await scenarios.jobs_tagged(client, tag)
    lags = [(s - d) * 1000 for j in rows
            if (s := scenarios.timestamp(j.get("startedAt"))) is not None
            and (d := scenarios.timestamp(j.get("scheduledFor"))) is not None]
    return {**scenarios.percentiles(lags), "early": sum(1 for lag in lags if lag < 0), "jobs": jobs,
            "spreadS": spread_s}


async def cron_fire_lag(api_url: str, key: str, schedules: int = 30, max_wait_s: float = 70) -> dict[str, Any]:
    """`schedules` every-minute schedules, all due at the next minute boundary: lag = the fired job's
    createdAt (and startedAt) - the fire time. Deleted right after their first fire."""
    tag = _tag("cron")
    async with scenarios.http_client(api_url, key) as client:
        # Never create them across a boundary: they would not share one fire time.
        to_boundary = 60 - time.time() % 60
        if to_boundary < 3:
            await asyncio.sleep(to_boundary + 0.5)
        ids: list[str] = []
        fire_at: set[float] = set()
        try:
            for i in range(schedules):
                body = {"name": f"{tag}-{i}", "cron": "* * * * *", "queue": CRON_QUEUE, "jobType": "noop",
                        "tags": [tag]}
                status, created = await scenarios.call(client, "POST", "/api/v1/scheduled-jobs", body)
                if status != 201:
                    raise unavailable(scenarios.Rejected("POST /scheduled-jobs", status, created))
                ids.append(created["id"])
                fire_at.add(scenarios.timestamp(created["nextFireTimes"][0]) or 0.0)
            fire = min(fire_at)
            if len(fire_at) > 1 or fire - time.time() > max_wait_s:
                raise RuntimeError(f"schedules not all due at one time within {max_wait_s} s: {sorted(fire_at)}")
            await asyncio.sleep(max(0.0, fire - time.time()))
            rows = await _until_fired(client, tag, schedules, deadline=fire + 15)
        finally:
            for schedule_id in ids:
                await scenarios.call(client, "DELETE", f"/api/v1/scheduled-jobs/{schedule_id}")
    created_lag = [(t - fire) * 1000 for j in rows if (t := scenarios.timestamp(j.get("createdAt"))) is not None]
    started_lag = [(t - fire) * 1000 for j in rows if (t := scenarios.timestamp(j.get("startedAt"))) is not None]
    return {**scenarios.percentiles(created_lag), "schedules": schedules, "fired": len(rows),
            "toStartedMs": scenarios.percentiles(started_lag)}


async def _until_fired(client: aiohttp.ClientSession, tag: str, count: int, deadline: float) -> list[dict[str, Any]]:
    """The jobs fired under `tag`, once all `count` exist and have started, or at `deadline` (Unix time)."""
    while True:
        rows = await scenarios.jobs_tagged(client, tag)
        started = sum(1 for j in rows if j.get("startedAt"))
        if (len(rows) >= count and started >= count) or time.time() > deadline:
            return rows
        await asyncio.sleep(0.25)
