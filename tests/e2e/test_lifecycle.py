"""A job through the whole cluster: REST in, Kafka events, audit trail, WebSocket out."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import pytest
import websockets

from tests.e2e.support import api, submit, topic_events, wait_for, wait_for_events
from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.slow


async def test_a_submitted_job_completes_and_everyone_hears_of_it(cluster: Cluster) -> None:
    async with websockets.connect(f"{cluster.notifier_url}/ws", additional_headers=cluster.auth_headers) as ws, \
            api(cluster) as client:
        await ws.send(json.dumps({"type": "subscribe", "queue": "e2e"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["type"] == "subscribed"

        job_id = await submit(client, jobType="echo", payload={"hello": "world"}, priority="high")
        job = await wait_for(client, job_id)
        assert job["status"] == "completed", job
        assert job["result"] == {"hello": "world"}
        assert job["priority"] == 8
        assert job["attempts"] == 1
        [attempt] = job["attemptHistory"]
        assert attempt["attempt"] == 1 and attempt["status"] == "completed"
        assert datetime.fromisoformat(job["startedAt"]) <= datetime.fromisoformat(job["completedAt"])

        completed = None
        while completed is None:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] == "job_completed" and msg["jobId"] == job_id:
                completed = msg
        assert completed["queue"] == "e2e" and completed["status"] == "completed"

        trail = await wait_for_events(client, job_id, 4)
        assert [e["type"] for e in trail] == ["submitted", "dispatched", "started", "completed"]

    on_kafka = await topic_events(cluster, {job_id}, {"completed"})
    by_topic = {topic: env for topic, env, _ in on_kafka}
    # One trace spans the job: every event carries a traceparent with the submission's trace id.
    trace_ids = {headers["traceparent"].split("-")[1] for _, _, headers in on_kafka}
    assert len(trace_ids) == 1, [h for _, _, h in on_kafka]
    assert {headers["tenant"] for _, _, headers in on_kafka} == {"default"}
    assert set(by_topic) >= {"jobs.submitted", "jobs.dispatched", "jobs.started", "jobs.completed"}
    for topic, env in by_topic.items():
        assert set(env) == {"eventId", "type", "schemaVersion", "occurredAt", "jobId", "queue", "jobType",
                            "attempt", "data"}
        assert topic == {"submitted": "jobs.submitted", "dispatched": "jobs.dispatched",
                         "started": "jobs.started", "completed": "jobs.completed"}[env["type"]]
        assert env["jobId"] == job_id and env["queue"] == "e2e" and env["jobType"] == "echo"
        uuid.UUID(env["eventId"])
    assert by_topic["jobs.completed"]["attempt"] == 1


async def test_transient_failures_retry_until_success(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="fail", payload={"mode": "transient", "failTimes": 2},
                              retry={"baseDelayMs": 20, "maxDelayMs": 50})
        job = await wait_for(client, job_id)
    assert job["status"] == "completed", job
    assert job["attempts"] == 3
    history = job["attemptHistory"]
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["status"] for a in history] == ["failed", "failed", "completed"]
    assert all(a["error"]["retryable"] for a in history[:2])


async def test_permanent_failure_is_not_retried(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="fail", payload={"mode": "permanent", "message": "bad card"})
        job = await wait_for(client, job_id)
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"]["retryable"] is False
    assert "bad card" in job["error"]["message"]


async def test_transient_failures_exhaust_max_attempts(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="fail", payload={"mode": "transient"}, maxAttempts=3,
                              retry={"baseDelayMs": 10, "maxDelayMs": 20})
        job = await wait_for(client, job_id)
        assert job["status"] == "failed"
        assert [a["attempt"] for a in job["attemptHistory"]] == [1, 2, 3]
        assert all(a["status"] == "failed" and a["error"]["retryable"] for a in job["attemptHistory"])
        trail = await wait_for_events(client, job_id, 9)
    assert [e["type"] for e in trail].count("retry") == 2
    assert trail[-1]["type"] == "failed"


async def test_unknown_job_type_fails_permanently(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job = await wait_for(client, await submit(client, jobType="no-such-type"))
    assert job["status"] == "failed"
    assert job["error"]["type"] == "unknown_job_type"


async def test_cancel_of_a_waiting_job(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="noop", delayMs=60_000)
        await wait_for(client, job_id, {"scheduled"})
        r = await client.delete(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        await wait_for(client, job_id, {"cancelled"})
        assert (await client.delete(f"/jobs/{job_id}")).status_code == 409
        trail = await wait_for_events(client, job_id, 2)
    assert trail[-1]["type"] == "cancelled"


async def test_cancelling_a_running_job_stops_its_handler(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="sleep", payload={"ms": 20_000})
        await wait_for(client, job_id, {"running"})
        r = await client.delete(f"/jobs/{job_id}")
        assert r.status_code == 202, r.text
        job = await wait_for(client, job_id, {"cancelled", "completed"}, timeout_s=10)
    assert job["status"] == "cancelled"
