"""Helpers for whole-cluster tests: an API client, waiting on job states, reading the topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from shared.events import JOB_TOPICS
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

TERMINAL = {"completed", "failed", "cancelled"}


def api(cluster: Cluster) -> httpx.AsyncClient:
    """A client of the cluster's API, sending the cluster's admin key (auth is on, as by default)."""
    return httpx.AsyncClient(base_url=f"{cluster.api_url}/api/v1", headers=cluster.auth_headers, timeout=10)


async def submit(client: httpx.AsyncClient, **job: Any) -> str:
    """POST /jobs; returns the job id (asserting 201)."""
    body = {"queue": "e2e", "jobType": "noop", **job}
    r = await client.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["jobId"])


async def wait_for(
    client: httpx.AsyncClient, job_id: str, statuses: Iterable[str] = TERMINAL, timeout_s: float = 30
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until its status is one of `statuses`; returns the job."""
    wanted = set(statuses)

    async def job() -> dict[str, Any]:
        r = await client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    return await poll_until(job, lambda found: found["status"] in wanted, timeout_s=timeout_s, every_s=0.1)


async def wait_for_events(
    client: httpx.AsyncClient, job_id: str, count: int, timeout_s: float = 20
) -> list[dict[str, Any]]:
    """Poll the audit trail until it holds at least `count` events."""

    async def trail() -> list[dict[str, Any]]:
        r = await client.get(f"/jobs/{job_id}/events")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    return await poll_until(trail, lambda items: len(items) >= count, timeout_s=timeout_s, every_s=0.2)


async def topic_events(cluster: Cluster, job_ids: set[str], until_types: set[str],
                       timeout_s: float = 15) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """Read every job topic from the start; (topic, envelope, headers) of the given jobs, until
    each job has an event of one of `until_types`."""
    consumer = AIOKafkaConsumer(
        *(cluster.topics[t] for t in JOB_TOPICS), bootstrap_servers=cluster.kafka_bootstrap,
        group_id=None, auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    done: set[str] = set()
    try:
        deadline = time.monotonic() + timeout_s
        while done != job_ids and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    env = orjson.loads(record.value)
                    if env["jobId"] in job_ids:
                        headers = {k: v.decode() for k, v in record.headers}
                        found.append((record.topic.removeprefix(cluster.topic_prefix), env, headers))
                        if env["type"] in until_types:
                            done.add(env["jobId"])
    finally:
        await consumer.stop()
    assert done == job_ids, f"no {until_types} event for {job_ids - done}"
    return found


def new_queue() -> str:
    """A queue name no other test uses."""
    return f"q-{uuid.uuid4().hex[:8]}"
