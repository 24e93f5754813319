"""After a real run, /metrics/queues and /stats equal what the jobs table says about the same jobs.

Needs the analytics service filling stats_minute/hour/day (issue 10's aggregates).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from shared.analytics.histogram import bucket_of, percentile
from tests.e2e.support import api, new_queue
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

pytestmark = pytest.mark.slow

NOOP, TRANSIENT, PERMANENT = 120, 40, 20

DIRECT = """
SELECT count(*) AS submitted,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       (SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.queue = $1) AS started,
       (SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
        WHERE j.queue = $1 AND a.status = 'failed' AND a.attempt < j.attempts) AS retried
FROM jobs WHERE queue = $1
"""
DURATIONS = """
SELECT EXTRACT(EPOCH FROM a.ended_at - a.started_at) * 1000 AS ms
FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.queue = $1 AND a.ended_at IS NOT NULL
"""


def close(served: float | None, exact: float | None) -> bool:
    # The route reads a √2-bucket histogram of the worker's durationMs; the table holds the attempt's
    # start and end: the two agree within the percentile's bucket.
    return served is not None and exact is not None and abs(bucket_of(served) - bucket_of(exact)) <= 1


async def test_queue_metrics_equal_the_jobs_table(cluster: Cluster) -> None:
    queue = new_queue()
    jobs: list[dict[str, Any]] = (
        [{"queue": queue, "jobType": "noop"}] * NOOP
        + [{"queue": queue, "jobType": "fail", "payload": {"mode": "transient", "failTimes": 1},
            "maxAttempts": 3, "retry": {"strategy": "none"}}] * TRANSIENT
        + [{"queue": queue, "jobType": "fail", "payload": {"mode": "permanent"}}] * PERMANENT
    )
    async with api(cluster) as client:
        assert (await client.post("/job-batches", json={"jobs": jobs})).status_code == 201
        conn = await asyncpg.connect(cluster.database_url)
        try:
            await poll_until(lambda: conn.fetchval(
                "SELECT count(*) FROM jobs WHERE queue = $1 AND status IN ('completed', 'failed')", queue),
                lambda n: n == len(jobs), timeout_s=90, every_s=0.5)
            direct = dict(await conn.fetchrow(DIRECT, queue))
            durations = [float(r["ms"]) for r in await conn.fetch(DURATIONS, queue)]
        finally:
            await conn.close()
        assert direct["completed"] == NOOP + TRANSIENT and direct["failed"] == PERMANENT
        assert direct["retried"] == TRANSIENT

        async def mine() -> dict[str, Any]:
            items = (await client.get("/metrics/queues")).json()["items"]
            return next((i for i in items if i["queue"] == queue), {"counts": {}})

        served = await poll_until(mine, lambda i: i["counts"] == direct, timeout_s=60, every_s=0.5)
        stats = (await client.get("/stats")).json()
    exact = sorted(durations)
    histogram = [0] * 45
    for ms in durations:
        histogram[bucket_of(ms)] += 1
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert close(served["durationMs"][key], percentile(histogram, q)), (key, served["durationMs"], exact[-5:])
    assert served["successRate"] == round((NOOP + TRANSIENT) / len(jobs), 4)
    assert served["backlog"] == 0 and served["drainTimeS"] == 0.0 and served["waitMs"]["p50"] is not None
    [row] = [q for q in stats["queues"] if q["queue"] == queue]
    assert row["counts"] == direct and row["errorRate"] == round(PERMANENT / len(jobs), 4)
    assert stats["totals"]["completed"] >= NOOP + TRANSIENT and stats["totals"]["failed"] >= PERMANENT
