"""POST /api/v1/jobs and GET /api/v1/jobs/{id}."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from tests.integration.api.conftest import Api


async def test_submit_then_get_returns_the_job(api: Api) -> None:
    response = await api.client.post("/api/v1/jobs", json={
        "queue": "emails", "jobType": "send.welcome", "payload": {"to": "a@example.com"}, "priority": "high",
        "maxAttempts": 5, "tags": ["signup"], "timeoutMs": 5000,
        "retry": {"strategy": "linear", "baseDelayMs": 100, "maxDelayMs": 1000, "factor": 1.5, "jitter": False},
    })
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"jobId", "status"}
    assert body["status"] == "pending"
    job_id = body["jobId"]
    assert response.headers["location"] == f"/api/v1/jobs/{job_id}"

    got = await api.client.get(f"/api/v1/jobs/{job_id}")
    assert got.status_code == 200
    job = got.json()
    assert job["jobId"] == job_id
    assert job["queue"] == "emails"
    assert job["jobType"] == "send.welcome"
    assert job["status"] == "pending"
    assert job["priority"] == 8
    assert job["payload"] == {"to": "a@example.com"}
    assert job["maxAttempts"] == 5
    assert job["attempts"] == 0
    assert job["attemptHistory"] == []
    assert job["tags"] == ["signup"]
    assert job["timeoutMs"] == 5000
    assert job["retry"] == {"strategy": "linear", "baseDelayMs": 100, "maxDelayMs": 1000, "factor": 1.5,
                            "jitter": False}
    assert job["error"] is None and job["result"] is None and job["startedAt"] is None
    assert datetime.fromisoformat(job["createdAt"]) > datetime.now(UTC) - timedelta(minutes=1)
    assert await api.count("jobs") == 1
    assert await api.count("outbox") == 1


async def test_defaults_and_snake_case_input(api: Api) -> None:
    response = await api.client.post("/api/v1/jobs", json={"queue": "q", "job_type": "noop", "max_attempts": 2})
    assert response.status_code == 201, response.text
    job = (await api.client.get(f"/api/v1/jobs/{response.json()['jobId']}")).json()
    assert job["jobType"] == "noop"
    assert job["maxAttempts"] == 2
    assert job["priority"] == 5
    assert job["payload"] == {}
    assert job["retry"] is None  # none given: the worker applies its type's, else its queue's, else the default
    assert job["scheduledFor"] is None
    assert job["dependsOn"] == [] and job["batchId"] is None


async def test_priority_words_map_to_numbers(api: Api) -> None:
    for word, number in (("high", 8), ("normal", 5), ("low", 2), (0, 0), (10, 10)):
        job_id = await api.submit(priority=word)
        assert (await api.client.get(f"/api/v1/jobs/{job_id}")).json()["priority"] == number


async def test_delay_and_scheduled_for_set_the_run_time(api: Api) -> None:
    before = datetime.now(UTC)
    delayed = await api.submit(delayMs=60_000)
    job = (await api.client.get(f"/api/v1/jobs/{delayed}")).json()
    run_at = datetime.fromisoformat(job["scheduledFor"])
    assert before + timedelta(seconds=59) < run_at < before + timedelta(seconds=62)

    scheduled = await api.submit(scheduledFor="2031-05-01T12:00:00Z")
    job = (await api.client.get(f"/api/v1/jobs/{scheduled}")).json()
    assert datetime.fromisoformat(job["scheduledFor"]) == datetime(2031, 5, 1, 12, tzinfo=UTC)


async def test_depends_on_existing_jobs_is_stored(api: Api) -> None:
    first = await api.submit()
    second = await api.submit(dependsOn=[first])
    job = (await api.client.get(f"/api/v1/jobs/{second}")).json()
    assert job["dependsOn"] == [first]


async def test_depends_on_unknown_job_is_422_and_stores_nothing(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/jobs", json={"queue": "q", "jobType": "noop", "dependsOn": [str(uuid.uuid4())]}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["dependsOn"]
    assert await api.count("jobs") == 0 and await api.count("outbox") == 0


async def test_unknown_or_malformed_id_is_404_problem(api: Api) -> None:
    for path in (f"/api/v1/jobs/{uuid.uuid4()}", "/api/v1/jobs/not-a-uuid", f"/api/v1/jobs/{uuid.uuid4()}/events"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 404 and problem["title"] and problem["instance"] == path


async def test_idempotency_same_body_is_200_different_body_is_409(api: Api) -> None:
    body = {"queue": "q", "jobType": "noop", "payload": {"n": 1}}
    first = await api.client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    # Same request, spelled differently (defaults explicit, snake_case): still the same request.
    again = await api.client.post(
        "/api/v1/jobs", json={**body, "priority": 5, "max_attempts": 3}, headers={"Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"

    other = await api.client.post(
        "/api/v1/jobs", json={**body, "payload": {"n": 2}}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["errors"][0]["field"] == "idempotencyKey"

    # The key may also travel in the body.
    in_body = await api.client.post("/api/v1/jobs", json={**body, "idempotencyKey": "k-1"})
    assert in_body.status_code == 200 and in_body.json()["jobId"] == first.json()["jobId"]
    assert await api.count("jobs") == 1
    assert await api.count("outbox") == 1


async def test_concurrent_submissions_with_one_key_make_one_job(api: Api) -> None:
    body = {"queue": "q", "jobType": "noop", "payload": {"n": 1}}
    responses = await asyncio.gather(*(
        api.client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "race"}) for _ in range(8)
    ))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["jobId"] for r in responses}) == 1
    assert await api.count("jobs") == 1 and await api.count("outbox") == 1


async def test_idempotency_keys_are_per_tenant(api: Api) -> None:
    key = await create_api_key(api.pool, "acme", frozenset({Scope.SUBMIT, Scope.READ}), "t")
    body = {"queue": "q", "jobType": "noop"}
    mine = await api.client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "same"})
    theirs = await api.client.post(
        "/api/v1/jobs", json=body, headers={"Idempotency-Key": "same", "Authorization": f"Bearer {key}"}
    )
    assert mine.status_code == 201 and theirs.status_code == 201
    assert mine.json()["jobId"] != theirs.json()["jobId"]
