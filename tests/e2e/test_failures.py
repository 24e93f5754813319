"""Nothing lost: Kafka outages and worker crashes (SIGKILL, SIGTERM) while jobs are in flight."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import asyncpg
import pytest
from redis.asyncio import Redis

from shared.events import utcnow
from tests.chaos.support import executions, history_starts, rows, submit_many, wait_all_terminal
from tests.e2e.support import api, new_queue, submit, wait_for
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

pytestmark = pytest.mark.slow


async def test_kafka_outage_loses_no_submission(cluster: Cluster) -> None:
    async with api(cluster) as client:
        cluster.broker.stop()
        try:
            ids = [await submit(client, jobType="echo", payload={"n": n}) for n in range(20)]
            await asyncio.sleep(1)  # the behaviour under test: nothing moves while Kafka is down
            for job_id in ids:
                assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "pending"
        finally:
            cluster.broker.start()  # a memory broker: it comes back empty, topics re-created
        jobs = [await wait_for(client, job_id, timeout_s=60) for job_id in ids]
    assert [j["status"] for j in jobs] == ["completed"] * 20
    assert [j["result"] for j in jobs] == [{"n": n} for n in range(20)]


async def test_sigkilled_worker_job_is_requeued_after_its_lease(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="sleep", payload={"ms": 2000})
        await wait_for(client, job_id, {"running"})
        await cluster.supervisor.kill("worker", signal.SIGKILL)  # the supervisor restarts it
        job = await wait_for(client, job_id, timeout_s=60)
    assert job["status"] == "completed"
    history = job["attemptHistory"]
    assert [a["status"] for a in history] == ["failed", "completed"]
    assert history[0]["error"]["type"] in {"lease_expired", "lease_lost"}


async def test_sigterm_lets_in_flight_jobs_finish(cluster: Cluster) -> None:
    async with api(cluster) as client:
        ids = [await submit(client, jobType="sleep", payload={"ms": 1500}) for _ in range(3)]
        for job_id in ids:
            await wait_for(client, job_id, {"running"})
        await cluster.supervisor.kill("worker", signal.SIGTERM)
        jobs = [await wait_for(client, job_id, timeout_s=30) for job_id in ids]
    for job in jobs:
        assert job["status"] == "completed"
        assert job["attempts"] == 1, job  # finished by the stopping worker, not requeued
        assert [a["status"] for a in job["attemptHistory"]] == ["completed"]


async def test_flushall_in_the_middle_of_500_jobs_loses_none(cluster: Cluster) -> None:
    # Half the jobs may run once only: a re-dispatch after the loss must not use that attempt up.
    queue = new_queue()
    async with api(cluster) as client:
        ids = await submit_many(client, 250, queue=queue, jobType="sleep", payload={"ms": 300})
        ids += await submit_many(client, 250, queue=queue, jobType="sleep", payload={"ms": 300}, maxAttempts=1)

    def finished(found: dict[uuid.UUID, asyncpg.Record]) -> int:
        return sum(1 for r in found.values() if r["status"] in ("completed", "failed"))

    await poll_until(lambda: rows(cluster, ids), lambda found: finished(found) >= 100, timeout_s=60, every_s=0.1)
    redis = Redis.from_url(cluster.redis_url)
    try:
        flushed_at, began = utcnow(), time.monotonic()
        await redis.flushall()
    finally:
        await redis.aclose()
    final = await wait_all_terminal(cluster, ids, timeout_s=60)  # rebuilt from Postgres within 60 s
    recovered_s = time.monotonic() - began
    runs = await executions(cluster, ids)
    in_flight = runs.in_flight_at(flushed_at)
    firsts = await history_starts(cluster, ids)
    again = {job for job in ids if runs.count(job) > 1}
    statuses = Counter(r["status"] for r in final.values())
    print(f"FLUSHALL: all terminal {recovered_s:.1f}s after; in flight {len(in_flight)}, "
          f"run more than once {len(again)}, duplicate runs {runs.duplicates()}, statuses {dict(statuses)}")
    assert len(final) == 500  # none lost
    for job in ids:
        row = final[job]
        # Attempts count executions: every attempt shown is one that started, numbered from 1.
        assert row["attempts"] == len(runs.attempts(job)) <= row["max_attempts"], (job, row, runs.runs.get(job))
        assert firsts.get(job) == 1, (job, firsts.get(job))
        if job not in in_flight:
            assert (row["status"], row["attempts"], runs.count(job)) == ("completed", 1, 1), (job, row)
    assert again <= in_flight  # none ran twice but the ones in flight at the flush
    assert runs.duplicates() <= len(in_flight)
