"""POST /api/v1/job-batches and GET /api/v1/job-batches/{id}."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.integration.api.conftest import Api

JOB = {"queue": "q", "jobType": "noop"}


async def post_batch(api: Api, jobs: list[Any]) -> Any:
    return await api.client.post("/api/v1/job-batches", json={"jobs": jobs})


@pytest.fixture
async def nothing_stored(api: Api) -> AsyncIterator[Api]:
    yield api
    for table in ("jobs", "outbox", "job_batches"):
        assert await api.count(table) == 0, table


async def test_batch_with_refs_and_dependencies(api: Api) -> None:
    outside = await api.submit()
    response = await post_batch(api, [
        {**JOB, "ref": "extract", "payload": {"step": 1}},
        {**JOB, "ref": "transform", "dependsOn": ["extract"]},
        {**JOB, "ref": "load", "dependsOn": ["transform", outside], "priority": "low"},
        {**JOB, "depends_on": ["extract", "load"]},
    ])
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"batchId", "jobIds"}
    batch_id, ids = body["batchId"], body["jobIds"]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert response.headers["location"] == f"/api/v1/job-batches/{batch_id}"

    jobs = [(await api.client.get(f"/api/v1/jobs/{i}")).json() for i in ids]
    assert [j["batchId"] for j in jobs] == [batch_id] * 4
    assert jobs[0]["dependsOn"] == [] and jobs[0]["payload"] == {"step": 1}
    assert jobs[1]["dependsOn"] == [ids[0]]
    assert jobs[2]["dependsOn"] == [ids[1], outside] and jobs[2]["priority"] == 2
    assert jobs[3]["dependsOn"] == [ids[0], ids[2]]

    events = [orjson.loads(r["value"]) for r in await api.pool.fetch("SELECT value FROM outbox ORDER BY id")]
    batch_events = [e for e in events if e["data"]["batchId"] == batch_id]
    assert [e["jobId"] for e in batch_events] == ids
    assert batch_events[3]["data"]["dependsOn"] == [ids[0], ids[2]]
    listed = (await api.client.get("/api/v1/jobs", params={"batchId": batch_id})).json()["items"]
    assert sorted(i["jobId"] for i in listed) == sorted(ids)


async def test_batch_counts(api: Api) -> None:
    ids = (await post_batch(api, [JOB] * 6)).json()
    batch_id, job_ids = ids["batchId"], ids["jobIds"]
    for job_id, status in zip(job_ids, ["queued", "running", "completed", "failed", "cancelled", "pending"],
                              strict=True):
        await api.pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", uuid.UUID(job_id), status)
    response = await api.client.get(f"/api/v1/job-batches/{batch_id}")
    assert response.status_code == 200
    assert response.json() == {"batchId": batch_id, "counts": {
        "total": 6, "pending": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1,
    }, "status": "running", "completedAt": None}


async def test_batch_is_completed_once_the_scheduler_marked_it(api: Api) -> None:
    created = (await post_batch(api, [JOB] * 2)).json()
    batch_id = uuid.UUID(created["batchId"])
    # Every job terminal is not enough: `completed` is what the scheduler decided (and announced).
    await api.pool.execute("UPDATE jobs SET status = 'completed' WHERE batch_id = $1", batch_id)
    body = (await api.client.get(f"/api/v1/job-batches/{batch_id}")).json()
    assert (body["status"], body["completedAt"]) == ("running", None)

    done_at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    await api.pool.execute("UPDATE job_batches SET completed_at = $2 WHERE id = $1", batch_id, done_at)
    body = (await api.client.get(f"/api/v1/job-batches/{batch_id}")).json()
    assert body["status"] == "completed"
    assert datetime.fromisoformat(body["completedAt"]) == done_at
    assert body["counts"] == {"total": 2, "pending": 0, "running": 0, "completed": 2, "failed": 0, "cancelled": 0}


async def test_unknown_batch_is_404(api: Api) -> None:
    for batch_id in (str(uuid.uuid4()), "x"):
        response = await api.client.get(f"/api/v1/job-batches/{batch_id}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("jobs", "field"), [
    ([JOB, JOB, JOB, {**JOB, "priority": 11}], "jobs[3].priority"),
    ([JOB, {**JOB, "payload": []}], "jobs[1].payload"),
    ([JOB, {"queue": "q"}], "jobs[1].jobType"),
    ([{**JOB, "dependsOn": ["nowhere"]}], "jobs[0].dependsOn"),
    ([{**JOB, "ref": "a", "dependsOn": ["b"]}, {**JOB, "ref": "b", "dependsOn": ["a"]}], "jobs[1].dependsOn"),
    ([{**JOB, "ref": "self", "dependsOn": ["self"]}], "jobs[0].dependsOn"),
    ([{**JOB, "ref": "a"}, {**JOB, "ref": "a"}], "jobs[1].ref"),
    ([{**JOB, "idempotencyKey": "k"}, {**JOB, "idempotencyKey": "k"}], "jobs[1].idempotencyKey"),
    ([{**JOB, "dependsOn": [str(uuid.uuid4())]}], "jobs[0].dependsOn"),
    ([], "jobs"),
    ([JOB] * 5001, "jobs"),
])
async def test_any_invalid_job_rejects_the_whole_batch(nothing_stored: Api, jobs: list[Any], field: str) -> None:
    response = await post_batch(nothing_stored, jobs)
    assert response.status_code == 422, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_cycle_names_every_job_on_it(nothing_stored: Api) -> None:
    response = await post_batch(nothing_stored, [
        {**JOB, "ref": "ok"},
        {**JOB, "ref": "a", "dependsOn": ["c", "ok"]},
        {**JOB, "ref": "b", "dependsOn": ["a"]},
        {**JOB, "ref": "c", "dependsOn": ["b"]},
    ])
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == [
        "jobs[1].dependsOn", "jobs[2].dependsOn", "jobs[3].dependsOn",
    ]


async def test_oversized_payload_in_a_batch_is_413(nothing_stored: Api) -> None:
    response = await post_batch(nothing_stored, [JOB, {**JOB, "payload": {"x": "y" * (257 * 1024)}}])
    assert response.status_code == 413
    assert [e["field"] for e in response.json()["errors"]] == ["jobs[1].payload"]


async def test_used_idempotency_key_is_409_and_stores_nothing(api: Api) -> None:
    await api.client.post("/api/v1/jobs", json={**JOB, "idempotencyKey": "taken"})
    response = await post_batch(api, [JOB, {**JOB, "idempotencyKey": "taken"}])
    assert response.status_code == 409
    assert [e["field"] for e in response.json()["errors"]] == ["jobs[1].idempotencyKey"]
    assert await api.count("jobs") == 1 and await api.count("job_batches") == 0


async def test_largest_batch_is_one_transaction(api: Api) -> None:
    response = await post_batch(api, [{**JOB, "payload": {"i": i}} for i in range(5000)])
    assert response.status_code == 201, response.text[:300]
    assert len(response.json()["jobIds"]) == 5000
    assert await api.count("jobs") == 5000
    assert await api.count("outbox") == 5000
    assert await api.count("job_batches") == 1


async def test_batch_callback_url_is_stored_and_checked(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/job-batches", json={"jobs": [JOB], "callbackUrl": "https://hooks.example.com/batch"}
    )
    assert response.status_code == 201, response.text
    stored = await api.pool.fetchval(
        "SELECT callback_url FROM job_batches WHERE id = $1", uuid.UUID(response.json()["batchId"])
    )
    assert stored == "https://hooks.example.com/batch"


async def test_a_bad_batch_callback_url_is_named_and_nothing_is_stored(nothing_stored: Api) -> None:
    response = await nothing_stored.client.post(
        "/api/v1/job-batches", json={"jobs": [JOB], "callbackUrl": "ftp://example.com/x"}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["callbackUrl"]
