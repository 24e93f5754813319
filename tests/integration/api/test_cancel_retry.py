"""DELETE /api/v1/jobs/{id}, POST /api/v1/jobs/{id}/retry and GET /api/v1/jobs/{id}/events."""

from __future__ import annotations

import uuid

import orjson
import pytest

from shared.dispatch.protocol import JobRef
from shared.models import JobSpec
from tests.integration.api.conftest import Api


async def outbox_events(api: Api) -> list[dict[str, object]]:
    rows = await api.pool.fetch("SELECT topic, key, value, headers FROM outbox ORDER BY id")
    out = []
    for row in rows:
        envelope = orjson.loads(bytes(row["value"]))
        envelope["_topic"] = row["topic"]
        envelope["_tenant"] = row["headers"].get("tenant")
        out.append(envelope)
    return out


async def push_to_redis(api: Api, job_id: str) -> JobSpec:
    spec = JobSpec(job_id=uuid.UUID(job_id), queue="q", job_type="noop", payload={})
    await api.dispatcher.push([(spec, 0)])
    return spec


@pytest.mark.parametrize("status", ["pending", "blocked", "scheduled", "queued", "retrying"])
async def test_cancel_waiting_job_is_immediate(api: Api, status: str) -> None:
    job_id = await api.submit()
    await api.pool.execute("UPDATE jobs SET status = $2, state_attempt = 1, state_rank = 1 WHERE id = $1",
                           uuid.UUID(job_id), status)
    await push_to_redis(api, job_id)

    response = await api.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json() == {"jobId": job_id, "status": "cancelled"}

    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "cancelled" and job["cancelReason"] == "cancelled_by_user"
    assert job["completedAt"] is not None
    row = await api.pool.fetchrow("SELECT state_rank, state_attempt FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert (row["state_attempt"], row["state_rank"]) == (1, 5)
    # Its cancel flag is up, so Redis counts it as gone and no worker can take it (the scheduler
    # removes the waiting copy when it records the event: ADR 0001).
    ref = JobRef("q", uuid.UUID(job_id))
    assert await api.dispatcher.held([ref]) == set()
    assert await api.dispatcher.cancelled([ref]) == {uuid.UUID(job_id)}
    assert await api.dispatcher.pop(["q"], 1, 30_000, "w1") == []
    cancelled = [e for e in await outbox_events(api) if e["type"] == "cancelled"]
    assert len(cancelled) == 1
    event = cancelled[0]
    assert event["_topic"] == "jobs.cancelled" and event["_tenant"] == "default"
    assert event["jobId"] == job_id and event["attempt"] == 1
    assert event["data"] == {"reason": "cancelled_by_user", "by": "api"}


async def test_cancel_running_job_asks_the_worker(api: Api) -> None:
    job_id = await api.submit()
    await push_to_redis(api, job_id)
    [lease] = await api.dispatcher.pop(["q"], 1, 30_000, "w1")
    await api.pool.execute("UPDATE jobs SET status = 'running' WHERE id = $1", uuid.UUID(job_id))

    response = await api.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json() == {"jobId": job_id, "status": "running", "cancelRequested": True}
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "running" and job["cancelRequested"] is True
    assert await api.dispatcher.cancelled([lease.ref]) == {lease.job_id}
    assert await api.dispatcher.leased([lease.ref]) == {lease.job_id}  # the worker still holds it
    assert [e["type"] for e in await outbox_events(api)] == ["submitted"]  # the worker reports the outcome


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_cancel_terminal_job_is_409(api: Api, status: str) -> None:
    job_id = await api.submit()
    await api.pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", uuid.UUID(job_id), status)
    response = await api.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert status in response.json()["detail"]
    assert (await api.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] == status


async def test_cancel_unknown_job_is_404(api: Api) -> None:
    for job_id in (str(uuid.uuid4()), "nope"):
        response = await api.client.delete(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_retry_failed_job_gets_a_fresh_budget(api: Api) -> None:
    job_id = await api.submit(maxAttempts=3, tags=["t"], payload={"p": 1})
    await api.pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 3, state_attempt = 3, state_rank = 4, completed_at = now(),"
        " error = '{\"type\": \"x\", \"message\": \"m\", \"retryable\": false}', result = NULL WHERE id = $1",
        uuid.UUID(job_id),
    )
    response = await api.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 200, response.text
    assert response.json() == {"jobId": job_id, "status": "pending"}

    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "pending"
    assert job["attempts"] == 3 and job["maxAttempts"] == 6
    assert job["error"] is None and job["completedAt"] is None
    row = await api.pool.fetchrow("SELECT state_rank, state_attempt FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert (row["state_attempt"], row["state_rank"]) == (3, 0)

    retried = (await outbox_events(api))[-1]
    assert retried["type"] == "submitted" and retried["attempt"] == 0 and retried["_topic"] == "jobs.submitted"
    data = retried["data"]
    assert isinstance(data, dict)
    assert data["manualRetry"] is True
    assert data["maxAttempts"] == 6 and data["payload"] == {"p": 1} and data["tags"] == ["t"]
    assert set(data) >= {"priority", "payload", "maxAttempts", "retry", "timeoutMs", "runAt", "dependsOn", "tags",
                         "batchId", "callbackUrl"}

    # Retried again after failing again: the budget is the original 3 (from the audit log), not 6.
    await api.pool.execute(
        "INSERT INTO job_events (event_id, job_id, type, queue, job_type, attempt, occurred_at, envelope)"
        " VALUES ($1, $2, 'submitted', 'q', 'noop', 0, now() - interval '1 hour', $3)",
        uuid.uuid4(), uuid.UUID(job_id), {"type": "submitted", "data": {"maxAttempts": 3}},
    )
    await api.pool.execute("UPDATE jobs SET status = 'failed', attempts = 6 WHERE id = $1", uuid.UUID(job_id))
    assert (await api.client.post(f"/api/v1/jobs/{job_id}/retry")).status_code == 200
    assert (await api.client.get(f"/api/v1/jobs/{job_id}")).json()["maxAttempts"] == 9


async def test_retry_cancelled_job_clears_its_cancel_flag(api: Api) -> None:
    job_id = await api.submit()
    assert (await api.client.delete(f"/api/v1/jobs/{job_id}")).status_code == 200
    assert await api.dispatcher.cancelled([JobRef("q", uuid.UUID(job_id))])
    response = await api.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 200
    assert await api.dispatcher.cancelled([JobRef("q", uuid.UUID(job_id))]) == set()
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["status"] == "pending" and job["cancelReason"] is None and job["cancelRequested"] is False


@pytest.mark.parametrize("status", ["pending", "queued", "running", "completed"])
async def test_retry_of_a_live_or_completed_job_is_409(api: Api, status: str) -> None:
    job_id = await api.submit()
    await api.pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", uuid.UUID(job_id), status)
    before = await api.count("outbox")
    response = await api.client.post(f"/api/v1/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert await api.count("outbox") == before


async def test_retry_unknown_job_is_404(api: Api) -> None:
    assert (await api.client.post(f"/api/v1/jobs/{uuid.uuid4()}/retry")).status_code == 404


async def test_events_oldest_first(api: Api) -> None:
    job_id = await api.submit()
    kinds = [("started", 1, "2024-01-01T00:00:02Z"), ("submitted", 0, "2024-01-01T00:00:00Z"),
             ("dispatched", 1, "2024-01-01T00:00:01Z")]
    for kind, attempt, at in kinds:
        event_id = uuid.uuid4()
        envelope = {"eventId": str(event_id), "type": kind, "schemaVersion": 1, "occurredAt": at,
                    "jobId": job_id, "queue": "q", "jobType": "noop", "attempt": attempt, "data": {}}
        await api.pool.execute(
            "INSERT INTO job_events (event_id, job_id, type, queue, job_type, attempt, occurred_at, envelope)"
            " VALUES ($1, $2, $3, 'q', 'noop', $4, $5::text::timestamptz, $6)",
            event_id, uuid.UUID(job_id), kind, attempt, at, envelope,
        )
    response = await api.client.get(f"/api/v1/jobs/{job_id}/events")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [e["type"] for e in items] == ["submitted", "dispatched", "started"]
    assert set(items[0]) == {"eventId", "type", "schemaVersion", "occurredAt", "jobId", "queue", "jobType",
                             "attempt", "data"}


async def test_events_of_a_job_without_any_is_empty(api: Api) -> None:
    job_id = await api.submit()
    assert (await api.client.get(f"/api/v1/jobs/{job_id}/events")).json() == {"items": []}
