"""The real `python -m services.api` process (through the cluster fixture), over TCP."""

from __future__ import annotations

import asyncio
import socket
import time

import asyncpg
import httpx
import orjson
import pytest

from deploy.local.servers import free_port
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until
from tests.integration.api.conftest import bearer
from tests.integration.api.test_app import new_admin_key
from tests.integration.api.test_outbox_kafka import check_submitted_envelope, consume

JOB = {"queue": "q", "jobType": "noop", "payload": {"hello": "world"}}
AUTH_ON = {"AUTH_REQUIRED": "true"}


@pytest.mark.cluster(services=("api",), env=AUTH_ON)
async def test_api_process_serves_and_publishes(cluster: Cluster) -> None:
    key = await new_admin_key(cluster.database_url)
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10, headers=bearer(key)) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        response = await client.post("/api/v1/jobs", json=JOB)
        assert response.status_code == 201, response.text
        job_id = response.json()["jobId"]
        assert (await client.get(f"/api/v1/jobs/{job_id}")).json()["payload"] == {"hello": "world"}

        # The service's own relay publishes right after the commit.
        [record] = await consume(cluster.kafka_bootstrap, cluster.topics["jobs.submitted"], 1)
        check_submitted_envelope(record, job_id, JOB)

        metrics = (await client.get("/metrics")).text
        assert 'conveyor_api_jobs_submitted_total{kind="single"} 1.0' in metrics
        assert 'conveyor_api_request_duration_seconds_count{method="POST",route="/api/v1/jobs"}' in metrics

        docs = await client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = (await client.get("/openapi.json")).json()
        assert "/api/v1/jobs" in spec["paths"] and "/api/v1/job-batches" in spec["paths"]
        schema = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/JobSubmission"}
        assert "priority" in spec["components"]["schemas"]["JobSubmission"]["properties"]

        missing = await client.get("/api/v1/nothing-here")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        wrong_method = await client.put("/api/v1/jobs")
        assert wrong_method.status_code == 405
        assert wrong_method.headers["content-type"] == "application/problem+json"


@pytest.mark.cluster(services=("api",), env=AUTH_ON)
async def test_oversized_body_is_refused_before_it_is_sent(cluster: Cluster) -> None:
    """The 413 arrives while the client has sent only the headers (the server never reads the body)."""
    port = cluster.ports["api"]
    declared = 50 * 1024 * 1024

    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {declared}\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    raw = await asyncio.to_thread(exchange)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"content-type: application/problem+json" in head.lower()
    assert orjson.loads(body)["status"] == 413
    conn = await asyncpg.connect(cluster.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    finally:
        await conn.close()


@pytest.mark.cluster(services=("api",), env={**AUTH_ON, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
async def test_api_process_accepts_jobs_while_kafka_is_unreachable(cluster: Cluster) -> None:
    key = await new_admin_key(cluster.database_url)
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10, headers=bearer(key)) as client:
        assert (await client.get("/readyz")).status_code == 200  # readiness is Postgres only
        started = time.monotonic()
        for _ in range(3):
            response = await client.post("/api/v1/jobs", json=JOB)
            assert response.status_code == 201, response.text
        assert time.monotonic() - started < 5  # submissions do not wait for Kafka
    # The relay tried to publish them and failed (it says so in the log); the rows stay.
    await poll_until(lambda: asyncio.to_thread(lambda: "outbox relay:" in cluster.log_tail("api", 200)), timeout_s=20)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 3
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 3
    finally:
        await conn.close()
