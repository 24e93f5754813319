"""Webhooks through the whole cluster: a job's and a batch's callbackUrl, signed, retried, recorded."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from shared.webhooks import ensure_secret, verify
from tests.e2e.support import api, new_queue, submit, wait_for
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import eventually, poll_until
from tests.fixtures.webhook_receiver import running_receiver

pytestmark = [
    pytest.mark.slow,
    # Retries within a second (the default base is 30 s).
    pytest.mark.cluster(env={"WEBHOOK_RETRY_BASE_S": "0.3", "WEBHOOK_POLL_S": "0.2"}),
]


async def default_secret(cluster: Cluster) -> str:
    conn = await asyncpg.connect(cluster.database_url, timeout=10)
    try:
        return await ensure_secret(conn, "default")
    finally:
        await conn.close()


async def test_a_job_callback_is_signed_retried_after_a_500_and_recorded(cluster: Cluster) -> None:
    async with running_receiver() as receiver, api(cluster) as client:
        receiver.statuses["/job"] = [500, 200]
        job_id = await submit(client, queue=new_queue(), jobType="echo", payload={"n": 1},
                              callbackUrl=receiver.url("/job"))
        job = await wait_for(client, job_id)
        assert job["status"] == "completed"

        first, second = await eventually(lambda: receiver.to("/job"), lambda calls: len(calls) == 2, timeout_s=30)
        secret = await default_secret(cluster)
        for call in (first, second):
            assert verify(secret, call.signature, call.body)
            assert call.event == "completed"
        assert first.delivery == second.delivery
        envelope = orjson.loads(second.body)
        assert envelope["type"] == "completed" and envelope["jobId"] == job_id
        assert envelope["data"]["result"] == {"n": 1}

        async def shown() -> dict[str, Any]:
            r = await client.get(f"/jobs/{job_id}/deliveries")
            assert r.status_code == 200, r.text
            return dict(r.json())

        listed = await poll_until(shown, lambda body: body["items"] and body["items"][0]["state"] == "delivered",
                                  timeout_s=15)
        (item,) = listed["items"]
        assert item["deliveryId"] == first.delivery and item["event"] == "completed"
        assert item["url"] == receiver.url("/job")
        assert [a["status"] for a in item["attempts"]] == [500, 200]
        assert item["attempts"][0]["error"] == "HTTP 500" and "error" not in item["attempts"][1]
        assert all(isinstance(a["durationMs"], int) and a["at"] for a in item["attempts"])

        missing = await client.get(f"/jobs/{uuid.uuid4()}/deliveries")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        without = await submit(client, queue=new_queue(), jobType="noop")
        await wait_for(client, without)
        assert (await client.get(f"/jobs/{without}/deliveries")).json() == {"items": []}


async def test_a_batch_callback_gets_batch_completed(cluster: Cluster) -> None:
    async with running_receiver() as receiver, api(cluster) as client:
        queue = new_queue()
        r = await client.post("/job-batches", json={
            "callbackUrl": receiver.url("/batch"),
            "jobs": [{"queue": queue, "jobType": "noop"}, {"queue": queue, "jobType": "fail",
                                                           "payload": {"mode": "permanent"}, "maxAttempts": 1}],
        })
        assert r.status_code == 201, r.text
        batch_id = r.json()["batchId"]
        (call,) = await eventually(lambda: receiver.to("/batch"), timeout_s=40)
        assert call.event == "batch_completed"
        assert verify(await default_secret(cluster), call.signature, call.body)
        body = orjson.loads(call.body)
        assert body["type"] == "batch_completed" and body["data"]["batchId"] == batch_id
        assert body["data"]["counts"]["total"] == 2
