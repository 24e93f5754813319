"""GET /api/v1/jobs: filters, keyset paging, and 422 for bad parameters."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.api.conftest import Api


async def test_filters_combine(api: Api) -> None:
    a = await api.submit(queue="alpha", jobType="resize", tags=["img", "big"])
    b = await api.submit(queue="alpha", jobType="noop", tags=["img"])
    c = await api.submit(queue="beta", jobType="resize")
    await api.pool.execute("UPDATE jobs SET status = 'failed' WHERE id = $1", uuid.UUID(b))

    async def ids(**params: Any) -> list[str]:
        response = await api.client.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [item["jobId"] for item in response.json()["items"]]

    assert await ids() == [c, b, a]  # newest first
    assert await ids(queue="alpha") == [b, a]
    assert await ids(jobType="resize") == [c, a]
    assert await ids(status="failed") == [b]
    assert await ids(status=["failed", "pending"]) == [c, b, a]
    assert await ids(tag="img") == [b, a]
    assert await ids(tag=["img", "big"]) == [a]
    assert await ids(q="esiz") == [c, a]
    assert await ids(q="BETA") == [c]
    assert await ids(q=b) == [b]
    assert await ids(q="%") == []  # LIKE wildcards are literal text
    assert await ids(queue="alpha", jobType="resize", status="pending") == [a]


async def test_created_window(api: Api) -> None:
    old = await api.submit()
    await api.pool.execute("UPDATE jobs SET created_at = '2020-01-01T00:00:00Z' WHERE id = $1", uuid.UUID(old))
    new = await api.submit()
    after = await api.client.get("/api/v1/jobs", params={"createdAfter": "2021-01-01T00:00:00Z"})
    assert [i["jobId"] for i in after.json()["items"]] == [new]
    before = await api.client.get("/api/v1/jobs", params={"createdBefore": "2021-01-01T00:00:00"})
    assert [i["jobId"] for i in before.json()["items"]] == [old]


async def test_items_carry_the_job_fields(api: Api) -> None:
    job_id = await api.submit(payload={"k": "v"})
    await api.pool.execute(
        "INSERT INTO job_attempts (job_id, attempt, worker_id, status, started_at, ended_at, error)"
        " VALUES ($1, 1, 'w1', 'failed', now(), now(), $2)",
        uuid.UUID(job_id), {"type": "transient", "message": "boom", "retryable": True},
    )
    await api.pool.execute("UPDATE jobs SET status = 'retrying', attempts = 1 WHERE id = $1", uuid.UUID(job_id))
    item = (await api.client.get("/api/v1/jobs")).json()["items"][0]
    single = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert item == single
    assert item["attempts"] == 1
    assert item["payload"] == {"k": "v"}
    [attempt] = item["attemptHistory"]
    assert attempt["attempt"] == 1 and attempt["workerId"] == "w1" and attempt["status"] == "failed"
    assert attempt["startedAt"] and attempt["endedAt"]
    # The job row has no error yet, so the last failed attempt's error is the job's.
    assert item["error"] == {"type": "transient", "message": "boom", "retryable": True}


async def test_cursor_pages_through_everything_once(api: Api) -> None:
    submitted = [await api.submit(payload={"i": i}) for i in range(7)]
    # Equal creation times must still page correctly: the id breaks the tie.
    await api.pool.execute("UPDATE jobs SET created_at = '2024-01-01T00:00:00Z' WHERE payload->>'i' IN ('2','3','4')")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await api.client.get("/api/v1/jobs", params=params)).json()
        assert len(body["items"]) <= 3
        seen += [i["jobId"] for i in body["items"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(submitted) and len(seen) == len(set(seen))


async def test_exact_page_has_no_next_cursor(api: Api) -> None:
    for _ in range(2):
        await api.submit()
    body = (await api.client.get("/api/v1/jobs", params={"limit": 2})).json()
    assert len(body["items"]) == 2 and body["nextCursor"] is None


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "bogus"}, "status[0]"),
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"createdAfter": "yesterday"}, "createdAfter"),
    ({"createdBefore": "2020-13-45"}, "createdBefore"),
    ({"batchId": "nope"}, "batchId"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": "WzEsMl0"}, "cursor"),  # valid base64 of [1,2], not a position
    ({"queue": "Not A Queue"}, "queue"),
    ({"jobType": "BAD"}, "jobType"),
    # Postgres text cannot hold U+0000: such a filter is refused, not a server error.
    ({"tag": "a\x00b"}, "tag[0]"),
    ({"q": "\x00"}, "q"),
    ({"createdAfter": "123"}, "createdAfter"),
])
async def test_bad_filter_is_422_naming_the_parameter(api: Api, params: dict[str, Any], field: str) -> None:
    response = await api.client.get("/api/v1/jobs", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_limit_bounds_are_inclusive(api: Api) -> None:
    for limit in (1, 500):
        assert (await api.client.get("/api/v1/jobs", params={"limit": limit})).status_code == 200
