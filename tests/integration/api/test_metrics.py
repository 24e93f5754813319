"""/api/v1/stats and /api/v1/metrics/* computed from aggregate rows written directly (real Postgres)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api.analytics.windows import MINUTE, floor_to
from shared.analytics.histogram import BOUNDS_MS, SLOTS, percentile
from shared.auth.keys import create_api_key
from shared.auth.principal import DEFAULT_TENANT, Scope
from tests.integration.api.conftest import Api, bearer
from tests.integration.api.metrics_rows import add_stats, add_worker_minute, by_attempt, histogram
from tests.integration.api.test_workers import register_like_a_worker

M = "/api/v1/metrics"


async def client_with(api: Api, *scopes: Scope, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    key = await create_api_key(api.pool, tenant, frozenset(scopes), "metrics-test")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://api.test",
                             headers=bearer(key))


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


FAST = [20.0] * 60 + [90.0] * 30 + [400.0] * 10      # 100 attempts of queue a, type fast
SLOW = [1500.0] * 8 + [3000.0] * 2                    # 10 attempts of queue a, type slow


async def seed_queue_a(api: Api) -> None:
    """Queue a: two job types 5 and 30 minutes ago, one row 2 hours ago, one 3 days ago; queue b 10 minutes ago."""
    await add_stats(api.pool, ago(minutes=5), job_type="fast", submitted=3000, started=3100, completed=95, failed=3,
                    retried=2, cancelled=1, duration_ms_sum=int(sum(FAST)), duration_count=len(FAST),
                    duration_hist=histogram(FAST), wait_ms_sum=500, wait_count=100, wait_hist=histogram([5.0] * 100),
                    completed_by_attempt=by_attempt([1] * 93 + [2] * 2), retried_by_attempt=by_attempt([1, 1]),
                    failed_by_attempt=by_attempt([1, 1, 2]))
    await add_stats(api.pool, ago(minutes=30), job_type="slow", submitted=600, started=620, completed=10,
                    retried=48, duration_ms_sum=int(sum(SLOW)), duration_count=len(SLOW),
                    duration_hist=histogram(SLOW), completed_by_attempt=by_attempt([1] * 6 + [3] * 4))
    await add_stats(api.pool, ago(hours=2), job_type="fast", submitted=7, completed=7, duration_count=7,
                    duration_ms_sum=7000, duration_hist=histogram([1000.0] * 7))
    await add_stats(api.pool, ago(days=3), job_type="fast", submitted=11, completed=11)
    await add_stats(api.pool, ago(minutes=10), queue="b", submitted=1, completed=1, failed=1)


async def test_queue_metrics_read_the_window_from_the_aggregates(api: Api) -> None:
    await seed_queue_a(api)
    for _ in range(3):
        await api.submit(queue="a")  # pending: the backlog, waiting now
    [a, b] = (await get(api.client, f"{M}/queues"))["items"]
    assert a["queue"] == "a" and b["queue"] == "b"
    assert a["counts"] == {"submitted": 3600, "started": 3720, "completed": 105, "failed": 3, "retried": 50,
                           "cancelled": 1}
    assert a["successRate"] == round(105 / 108, 4)
    both = [x + y for x, y in zip(histogram(FAST), histogram(SLOW), strict=True)]
    assert a["durationMs"] == {k: round(percentile(both, q) or 0, 1) for k, q in
                               (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    assert a["waitMs"]["p50"] == round(percentile(histogram([5.0] * 100), 0.5) or 0, 1)
    assert a["backlog"] == 3 and a["oldestWaitingAgeMs"] is not None and 0 <= a["oldestWaitingAgeMs"] < 60_000
    # The window is 59 to 60 minutes long (rounded up to a whole minute).
    assert 105 / 60 <= a["throughputPerMin"] <= 105 / 59 + 0.01
    # Little's law: arrivals (3600 + 50) / ~3560 s ≈ 1.03/s, mean attempt (sum / count) ≈ 0.211 s, and the
    # backlog of 3 within 60 s: ceil((1.03 + 0.05) x 0.211) = 1.
    mean_s = (sum(FAST) + sum(SLOW)) / 110 / 1000
    assert a["workersNeeded"] == math.ceil((3650 / 3570 + 3 / 60) * mean_s)
    assert (await get(api.client, f"{M}/queues", targetWaitS=0.1))["items"][0]["workersNeeded"] == \
        math.ceil((3650 / 3570 + 3 / 0.1) * mean_s)
    # Starts outrun arrivals by 70 per window: 3 / (70 / ~3570 s) ≈ 153 s.
    assert a["drainTimeS"] == pytest.approx(3 / (70 / 3570), rel=0.02)
    assert b["successRate"] == 0.5 and b["backlog"] == 0 and b["drainTimeS"] == 0.0
    assert b["durationMs"] == {"p50": None, "p95": None, "p99": None} and b["workersNeeded"] == 0


async def test_windows_cover_what_they_name(api: Api) -> None:
    await seed_queue_a(api)

    async def completed(window: str) -> int:
        items = (await get(api.client, f"{M}/queues", window=window))["items"]
        return sum(i["counts"]["completed"] for i in items if i["queue"] == "a")

    assert await completed("15m") == 95
    assert await completed("1h") == 105
    assert await completed("24h") == 112
    assert await completed("7d") == 123
    # A minute 61 minutes ago is outside the hour; 58 minutes ago inside.
    await add_stats(api.pool, ago(minutes=61), completed=1000)
    await add_stats(api.pool, ago(minutes=58), completed=10_000)
    assert await completed("1h") == 10_105


async def test_duration_histogram_buckets(api: Api) -> None:
    await seed_queue_a(api)
    buckets = (await get(api.client, f"{M}/job-duration-histogram"))["buckets"]
    assert [b["le"] for b in buckets] == [*BOUNDS_MS, None]
    both = [x + y for x, y in zip(histogram(FAST), histogram(SLOW), strict=True)]
    assert [b["count"] for b in buckets] == both
    only_slow = (await get(api.client, f"{M}/job-duration-histogram", queue="a", jobType="slow"))["buckets"]
    assert [b["count"] for b in only_slow] == histogram(SLOW) and len(only_slow) == SLOTS
    day = (await get(api.client, f"{M}/job-duration-histogram", window="24h", jobType="fast"))["buckets"]
    assert sum(b["count"] for b in day) == 107


async def test_timeline_has_every_step_oldest_first(api: Api) -> None:
    await add_stats(api.pool, ago(minutes=3), submitted=5, completed=4, failed=1, retried=2)
    await add_stats(api.pool, ago(minutes=3), queue="b", submitted=100)
    await add_stats(api.pool, ago(hours=5), completed=7)
    items = (await get(api.client, f"{M}/jobs/timeline", queue="a", window="15m"))["items"]
    assert len(items) == 15
    ats = [datetime.fromisoformat(i["at"]) for i in items]
    assert ats == sorted(ats) and all(at == floor_to(at, MINUTE) for at in ats)
    assert ats[-1] == floor_to(datetime.now(UTC), MINUTE)
    hit = [i for i in items if i["submitted"]]
    assert [(i["submitted"], i["completed"], i["failed"], i["retried"]) for i in hit] == [(5, 4, 1, 2)]
    assert datetime.fromisoformat(hit[0]["at"]) == floor_to(ago(minutes=3), MINUTE)
    assert sum(i["completed"] for i in items) == 4
    hourly = (await get(api.client, f"{M}/jobs/timeline", queue="a", window="24h", step="1h"))["items"]
    assert len(hourly) == 24 and sum(i["completed"] for i in hourly) == 11
    everything = (await get(api.client, f"{M}/jobs/timeline", window="1h", step="5m"))["items"]
    assert len(everything) == 12 and sum(i["submitted"] for i in everything) == 105


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/metrics/queues", {"window": "2h"}, "window"),
    ("/stats", {"window": "1w"}, "window"),
    ("/metrics/jobs/timeline", {"step": "7m"}, "step"),
    ("/metrics/jobs/timeline", {"step": "1s"}, "step"),
    ("/metrics/jobs/timeline", {"window": "15m", "step": "1h"}, "step"),
    ("/metrics/jobs/timeline", {"window": "7d", "step": "5m"}, "step"),
    ("/metrics/queues", {"targetWaitS": "0"}, "targetWaitS"),
    ("/metrics/job-duration-histogram", {"jobType": "BAD TYPE"}, "jobType"),
])
async def test_bad_parameters_are_422_naming_them(api: Api, path: str, params: dict[str, str], field: str) -> None:
    response = await api.client.get(f"/api/v1{path}", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_a_tenant_sees_its_own_figures_and_cluster_sees_all(api: Api) -> None:
    await add_stats(api.pool, ago(minutes=2), submitted=1, completed=1)
    await add_stats(api.pool, ago(minutes=2), tenant="acme", submitted=10, completed=10)
    await add_stats(api.pool, ago(minutes=2), tenant="acme", queue="secret", submitted=5)
    reader = await client_with(api, Scope.READ)
    acme = await client_with(api, Scope.READ, tenant="acme")
    try:
        [mine] = (await get(reader, f"{M}/queues"))["items"]
        assert mine["queue"] == "a" and mine["counts"]["completed"] == 1
        theirs = (await get(acme, f"{M}/queues"))["items"]
        assert [(i["queue"], i["counts"]["submitted"]) for i in theirs] == [("a", 10), ("secret", 5)]
        assert [q["queue"] for q in (await get(reader, "/api/v1/stats"))["queues"]] == ["a"]
        assert sum(i["submitted"] for i in (await get(reader, f"{M}/jobs/timeline"))["items"]) == 1
        assert (await get(reader, f"{M}/job-types"))["items"][0]["counts"]["submitted"] == 1
        # The test client's key holds `cluster`: every tenant.
        everyone = (await get(api.client, f"{M}/queues"))["items"]
        assert [(i["queue"], i["counts"]["submitted"]) for i in everyone] == [("a", 11), ("secret", 5)]
        assert (await reader.get(f"{M}/workers")).status_code == 403
        assert (await api.anonymous.get(f"{M}/queues")).status_code == 401
    finally:
        await reader.aclose()
        await acme.aclose()


async def test_job_types_slowest_first_with_success_by_attempt(api: Api) -> None:
    await seed_queue_a(api)
    items = (await get(api.client, f"{M}/job-types"))["items"]
    assert [(i["queue"], i["jobType"]) for i in items] == [("a", "slow"), ("a", "fast"), ("b", "t")]
    fast = items[1]
    assert fast["successRateByAttempt"] == [
        {"attempt": 1, "finished": 97, "successRate": round(93 / 97, 4)},
        {"attempt": 2, "finished": 3, "successRate": round(2 / 3, 4)},
    ]
    assert items[0]["successRateByAttempt"] == [{"attempt": 1, "finished": 6, "successRate": 1.0},
                                                {"attempt": 3, "finished": 4, "successRate": 1.0}]
    assert items[0]["durationMs"]["p95"] > fast["durationMs"]["p95"]
    assert items[2]["durationMs"]["p95"] is None
    assert len((await get(api.client, f"{M}/job-types", limit=1))["items"]) == 1


async def test_stats_totals_and_rates(api: Api) -> None:
    await seed_queue_a(api)
    await api.submit(queue="a")
    stats = await get(api.client, "/api/v1/stats")
    assert stats["totals"] == {"pending": 1, "blocked": 0, "scheduled": 0, "queued": 0, "running": 0, "retrying": 0,
                               "completed": 95 + 10 + 7 + 11 + 1, "failed": 4, "cancelled": 1}
    assert [q["queue"] for q in stats["queues"]] == ["a", "b"]
    a = stats["queues"][0]
    assert a["counts"]["completed"] == 105 and a["errorRate"] == round(3 / 108, 4)
    assert stats["errorRate"] == round(4 / 110, 4)
    assert 106 / 60 <= stats["throughputPerMin"] <= 106 / 59 + 0.01


async def test_worker_metrics_join_the_registry(api: Api) -> None:
    await register_like_a_worker(api.dispatcher, "w-live", 30_000, concurrency=4)
    await add_worker_minute(api.pool, "w-live", ago(minutes=1), completed=10, failed=1, retried=2, busy_ms=30_000)
    await add_worker_minute(api.pool, "w-old", ago(minutes=20), completed=3, busy_ms=1000)
    await add_worker_minute(api.pool, "w-old", ago(hours=3), completed=1000)
    items = (await get(api.client, f"{M}/workers"))["items"]
    assert [i["workerId"] for i in items] == ["w-live", "w-old"]
    live, old = items
    assert live["status"] == "active" and live["host"] == "box-1" and live["concurrency"] == 4
    assert (live["completed"], live["failed"], live["retried"], live["busyMs"]) == (10, 1, 2, 30_000)
    # Registered just now: its slot time is 4 x the few seconds since, so 30 s busy reads as fully used.
    assert live["utilisation"] == 1.0
    assert old == {"workerId": "w-old", "host": None, "status": "gone", "concurrency": None, "completed": 3,
                   "failed": 0, "retried": 0, "busyMs": 1000, "utilisation": None}
