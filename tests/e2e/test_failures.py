"""Nothing lost: Kafka outages and worker crashes (SIGKILL, SIGTERM) while jobs are in flight."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.e2e.support import api, submit, wait_for
from tests.fixtures.cluster import Cluster

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
