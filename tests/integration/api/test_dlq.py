"""The dead-letter queue: GET /dlq, POST /dlq/retry, POST /dlq/delete, GET /dlq/export.csv."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from shared.auth.keys import create_api_key
from shared.auth.principal import ALL_SCOPES, Scope
from shared.dispatch.protocol import JobRef
from tests.integration.api.conftest import Api, bearer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def fail(api: Api, job_id: str, *, minute: int, error_type: str = "boom", message: str = "it broke",
               attempts: int = 3) -> None:
    """Make a submitted job failed at T0 + minute, after `attempts` attempts (the last error on the attempt)."""
    jid = uuid.UUID(job_id)
    error = {"type": error_type, "message": message, "retryable": False}
    for attempt in range(1, attempts + 1):
        await api.pool.execute(
            "INSERT INTO job_attempts (job_id, attempt, worker_id, status, started_at, ended_at, error)"
            " VALUES ($1, $2, 'w1', 'failed', $3, $3, $4)", jid, attempt, T0, error,
        )
    await api.pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = $2, state_attempt = $2, state_rank = 4, completed_at = $3"
        " WHERE id = $1", jid, attempts, T0 + timedelta(minutes=minute),
    )


async def failed_job(api: Api, *, minute: int, **fields: Any) -> str:
    """Submit a job (fields of the submission, or `error_type`/`message`/`attempts` of its failure) and fail it."""
    failure = {k: fields.pop(k) for k in ("error_type", "message", "attempts") if k in fields}
    job_id = await api.submit(**fields)
    await fail(api, job_id, minute=minute, **failure)
    return job_id


async def other_tenant(api: Api) -> dict[str, str]:
    """Headers of an all-scopes key of another tenant."""
    return bearer(await create_api_key(api.pool, "other", ALL_SCOPES, "other"))


async def listed(api: Api, **params: Any) -> list[str]:
    response = await api.client.get("/api/v1/dlq", params=params)
    assert response.status_code == 200, response.text
    return [item["jobId"] for item in response.json()["items"]]


async def outbox_events(api: Api) -> list[dict[str, Any]]:
    rows = await api.pool.fetch("SELECT value FROM outbox ORDER BY id")
    return [orjson.loads(bytes(r["value"])) for r in rows]


async def test_list_filters_and_order(api: Api) -> None:
    a = await failed_job(api, minute=1, queue="alpha", jobType="resize", error_type="timeout")
    b = await failed_job(api, minute=3, queue="alpha", jobType="noop", error_type="boom")
    c = await failed_job(api, minute=2, queue="beta", jobType="resize", error_type="boom")
    await api.submit(queue="alpha")  # pending: not in the DLQ
    cancelled = await api.submit(queue="alpha")
    await api.pool.execute("UPDATE jobs SET status = 'cancelled' WHERE id = $1", uuid.UUID(cancelled))
    elsewhere = await api.client.post("/api/v1/jobs", json={"queue": "alpha", "jobType": "noop"},
                                      headers=await other_tenant(api))
    await fail(api, elsewhere.json()["jobId"], minute=9)

    assert await listed(api) == [b, c, a]  # newest failure first; another tenant's never
    assert await listed(api, queue="alpha") == [b, a]
    assert await listed(api, jobType="resize") == [c, a]
    assert await listed(api, errorType="boom") == [b, c]
    assert await listed(api, failedAfter=(T0 + timedelta(minutes=1, seconds=30)).isoformat()) == [b, c]
    assert await listed(api, failedBefore="2026-01-01T00:02:30") == [c, a]  # no offset: UTC
    assert await listed(api, queue="alpha", errorType="timeout") == [a]

    item = (await api.client.get("/api/v1/dlq", params={"queue": "beta"})).json()["items"][0]
    assert item == (await api.client.get(f"/api/v1/jobs/{c}")).json()  # the job resource itself
    assert item["error"] == {"type": "boom", "message": "it broke", "retryable": False}


async def test_keyset_paging(api: Api) -> None:
    ids = [await failed_job(api, minute=i % 3) for i in range(7)]  # ties on failedAt are ordered by id
    expected = (await listed(api, limit=500))
    assert sorted(expected) == sorted(ids)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/api/v1/dlq", params=params)).json()
        seen += [i["jobId"] for i in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected
    bad = await api.client.get("/api/v1/dlq", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    assert (await api.client.get("/api/v1/dlq", params={"limit": 501})).status_code == 422


async def test_retry_by_ids(api: Api) -> None:
    job = await failed_job(api, minute=1, maxAttempts=3, payload={"p": 1})
    live = await api.submit()
    elsewhere = await api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"},
                                      headers=await other_tenant(api))
    foreign = elsewhere.json()["jobId"]
    await fail(api, foreign, minute=2)
    await api.dispatcher.cancel("q", uuid.UUID(job))  # a cancel asked for while it ran
    await api.pool.execute("UPDATE jobs SET cancel_requested = true WHERE id = $1", uuid.UUID(job))
    before = len(await outbox_events(api))

    response = await api.client.post("/api/v1/dlq/retry", json={"ids": [job, live, foreign, str(uuid.uuid4())]})
    assert response.status_code == 200, response.text
    assert response.json() == {"retried": 1, "jobIds": [job]}  # the others are skipped, not errors

    view = (await api.client.get(f"/api/v1/jobs/{job}")).json()
    assert view["status"] == "pending" and view["error"] is None and view["completedAt"] is None
    assert view["attempts"] == 3 and view["maxAttempts"] == 6  # attempt numbers continue, a fresh budget
    assert [a["attempt"] for a in view["attemptHistory"]] == [1, 2, 3]  # its history stays
    assert view["cancelRequested"] is False
    assert await api.dispatcher.cancelled([JobRef("q", uuid.UUID(job))]) == set()
    [event] = (await outbox_events(api))[before:]
    assert event["type"] == "submitted" and event["jobId"] == job and event["attempt"] == 0
    assert event["data"]["manualRetry"] is True and event["data"]["maxAttempts"] == 6
    assert event["data"]["payload"] == {"p": 1}
    other = await api.client.get(f"/api/v1/jobs/{foreign}", headers=await other_tenant(api))
    assert other.json()["status"] == "failed"
    assert (await api.client.get(f"/api/v1/jobs/{live}")).json()["status"] == "pending"


async def test_retry_by_filter(api: Api) -> None:
    a = await failed_job(api, minute=1, queue="alpha", error_type="timeout")
    b = await failed_job(api, minute=2, queue="alpha", error_type="boom")
    c = await failed_job(api, minute=3, queue="beta", error_type="timeout")

    response = await api.client.post("/api/v1/dlq/retry", json={"filter": {"queue": "alpha", "errorType": "timeout"}})
    assert response.json() == {"retried": 1, "jobIds": [a]}
    response = await api.client.post("/api/v1/dlq/retry", json={"filter": {"failed_after": "2026-01-01T00:01:30Z"}})
    assert response.json() == {"retried": 2, "jobIds": [c, b]}  # newest failure first; snake_case accepted
    assert await listed(api) == []
    assert (await api.client.post("/api/v1/dlq/retry", json={"filter": {}})).json() == {"retried": 0, "jobIds": []}
    events = [e for e in await outbox_events(api) if e["data"].get("manualRetry")]
    assert sorted(e["jobId"] for e in events) == sorted([a, b, c])


async def test_empty_filter_retries_every_failed_job(api: Api) -> None:
    ids = {await failed_job(api, minute=i, queue=f"q{i}") for i in range(3)}
    response = await api.client.post("/api/v1/dlq/retry", json={"filter": {}})
    assert response.json()["retried"] == 3 and set(response.json()["jobIds"]) == ids


async def test_delete_keeps_the_audit_trail(api: Api) -> None:
    gone = await failed_job(api, minute=1, queue="alpha")
    kept = await failed_job(api, minute=2, queue="beta")
    # A dependent of the failed job (cancelled when it failed) is left as it is.
    dependent = await api.submit(dependsOn=[gone])
    await api.pool.execute(
        "UPDATE jobs SET status = 'cancelled', cancel_reason = 'dependency_failed' WHERE id = $1", uuid.UUID(dependent)
    )
    await api.pool.execute(
        "INSERT INTO job_events (event_id, job_id, type, queue, job_type, attempt, occurred_at, envelope)"
        " VALUES ($1, $2, 'failed', 'alpha', 'noop', 3, now(), '{}')", uuid.uuid4(), uuid.UUID(gone),
    )

    response = await api.client.post("/api/v1/dlq/delete", json={"filter": {"queue": "alpha"}})
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 1}
    assert (await api.client.get(f"/api/v1/jobs/{gone}")).status_code == 404
    assert await api.pool.fetchval("SELECT count(*) FROM job_attempts WHERE job_id = $1", uuid.UUID(gone)) == 0
    assert await api.pool.fetchval("SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(gone)) == 1
    assert await listed(api) == [kept]
    view = (await api.client.get(f"/api/v1/jobs/{dependent}")).json()
    assert view["status"] == "cancelled" and view["dependsOn"] == [gone]

    live = await api.submit()
    response = await api.client.post("/api/v1/dlq/delete", json={"ids": [kept, live, str(uuid.uuid4())]})
    assert response.json() == {"deleted": 1}
    assert (await api.client.get(f"/api/v1/jobs/{live}")).status_code == 200


async def test_csv_export(api: Api) -> None:
    tricky = 'a "quoted", multi\nline message'
    a = await failed_job(api, minute=2, queue="alpha", payload={"text": 'x, "y"', "n": [1, 2]}, message=tricky,
                         attempts=2)
    b = await failed_job(api, minute=1, queue="beta", jobType="resize", error_type="timeout")
    await api.submit()  # pending: not exported

    response = await api.client.get("/api/v1/dlq/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    text = response.text
    assert text.startswith("jobId,queue,jobType,attempts,errorType,errorMessage,failedAt,payload\r\n")
    assert '"a ""quoted"", multi\nline message"' in text  # RFC 4180 quoting
    rows = list(csv.reader(io.StringIO(text, newline="")))
    # jsonb stores an object's keys in its own order; the JSON is compact either way.
    assert rows[1:] == [
        [a, "alpha", "noop", "2", "boom", tricky, (T0 + timedelta(minutes=2)).isoformat(),
         '{"n":[1,2],"text":"x, \\"y\\""}'],
        [b, "beta", "resize", "3", "timeout", "it broke", (T0 + timedelta(minutes=1)).isoformat(), "{}"],
    ]
    only_beta = await api.client.get("/api/v1/dlq/export.csv", params={"queue": "beta"})
    assert [r[0] for r in csv.reader(io.StringIO(only_beta.text, newline=""))] == ["jobId", b]


async def test_csv_export_streams_every_batch(api: Api) -> None:
    # More rows than one batch (1,000), made in SQL: the export goes on from batch to batch.
    await api.pool.execute(
        "INSERT INTO jobs (id, queue, job_type, status, priority, payload, max_attempts, retry, attempts,"
        " completed_at, error)"
        " SELECT gen_random_uuid(), 'q', 'noop', 'failed', 5, jsonb_build_object('i', i), 1, '{}', 1,"
        " $1::timestamptz + make_interval(secs => i / 2), '{\"type\": \"t\", \"message\": \"m\", \"retryable\": false}'"
        " FROM generate_series(1, 2101) AS i", T0,
    )
    response = await api.client.get("/api/v1/dlq/export.csv")
    rows = list(csv.reader(io.StringIO(response.text, newline="")))[1:]
    assert len(rows) == 2101 and len({r[0] for r in rows}) == 2101
    assert {orjson.loads(r[7])["i"] for r in rows} == set(range(1, 2102))
    # Newest failure first, ties (two rows a second, also across a batch edge) by id: none lost or repeated.
    keys = [(datetime.fromisoformat(r[6]), uuid.UUID(r[0])) for r in rows]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/dlq/retry"), ("POST", "/api/v1/dlq/delete"),
])
async def test_bulk_actions_need_admin(api: Api, method: str, path: str) -> None:
    job = await failed_job(api, minute=1)
    reader = bearer(await create_api_key(api.pool, "default", frozenset({Scope.READ, Scope.SUBMIT}), "r"))
    response = await api.client.request(method, path, json={"ids": [job]}, headers=reader)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "admin" in response.json()["detail"]
    assert await listed(api) == [job]
    assert (await api.client.get("/api/v1/dlq", headers=reader)).status_code == 200
    assert (await api.client.get("/api/v1/dlq/export.csv", headers=reader)).status_code == 200
    submitter = bearer(await create_api_key(api.pool, "default", frozenset({Scope.SUBMIT}), "s"))
    assert (await api.client.get("/api/v1/dlq", headers=submitter)).status_code == 403
    assert (await api.client.get("/api/v1/dlq/export.csv", headers=submitter)).status_code == 403
    assert (await api.anonymous.get("/api/v1/dlq")).status_code == 401


async def test_another_tenant_sees_and_touches_nothing(api: Api) -> None:
    job = await failed_job(api, minute=1)
    other = await other_tenant(api)
    assert (await api.client.get("/api/v1/dlq", headers=other)).json() == {"items": [], "nextCursor": None}
    export = await api.client.get("/api/v1/dlq/export.csv", headers=other)
    assert export.text.count("\r\n") == 1  # the header only
    for path in ("/api/v1/dlq/retry", "/api/v1/dlq/delete"):
        bodies: list[dict[str, Any]] = [{"ids": [job]}, {"filter": {}}]
        for body in bodies:
            response = await api.client.post(path, json=body, headers=other)
            assert response.status_code == 200 and response.json() in ({"retried": 0, "jobIds": []}, {"deleted": 0})
    assert await listed(api) == [job]


@pytest.mark.parametrize(("body", "field"), [
    ({"ids": ["not-a-uuid"]}, "ids[0]"),
    ({"ids": [str(uuid.uuid4()), 7]}, "ids[1]"),
    ({"ids": [], "filter": {}}, "filter"),
    ({}, "ids"),
    ({"ids": None}, "ids"),
    ({"filter": {"colour": "red"}}, "filter.colour"),
    ({"filter": {"failedAfter": "yesterday"}}, "filter.failedAfter"),
    ({"filter": {"failedBefore": "2026-13-45T00:00:00Z"}}, "filter.failedBefore"),
    ({"filter": {"queue": "Not A Queue"}}, "filter.queue"),
    ({"ids": [str(uuid.uuid4())] * 10_001}, "ids"),
    ({"everything": True}, "everything"),
])
@pytest.mark.parametrize("path", ["/api/v1/dlq/retry", "/api/v1/dlq/delete"])
async def test_bad_bodies_are_422_naming_the_field(api: Api, path: str, body: dict[str, Any], field: str) -> None:
    job = await failed_job(api, minute=1)
    outbox_before = await api.count("outbox")
    response = await api.client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await listed(api) == [job] and await api.count("outbox") == outbox_before


@pytest.mark.parametrize(("params", "field"), [
    ({"failedAfter": "yesterday"}, "failedAfter"),
    ({"failedBefore": "123"}, "failedBefore"),
    ({"queue": "Bad Queue"}, "queue"),
    ({"jobType": "-x"}, "jobType"),
])
@pytest.mark.parametrize("path", ["/api/v1/dlq", "/api/v1/dlq/export.csv"])
async def test_bad_parameters_are_422(api: Api, path: str, params: dict[str, str], field: str) -> None:
    response = await api.client.get(path, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(("content", "content_type", "status"), [
    (b"", "application/json", 400),
    (b"{nope", "application/json", 400),
    (b'{"ids": []}', "text/plain", 415),
])
async def test_unreadable_bodies(api: Api, content: bytes, content_type: str, status: int) -> None:
    job = await failed_job(api, minute=1)
    for path in ("/api/v1/dlq/retry", "/api/v1/dlq/delete"):
        response = await api.client.post(path, content=content, headers={"content-type": content_type})
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
    assert await listed(api) == [job]


async def test_the_document_declares_the_body_and_the_csv(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    body = spec["paths"]["/api/v1/dlq/retry"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [sorted(branch["required"]) for branch in body["oneOf"]] == [["ids"], ["filter"]]
    assert body["additionalProperties"] is False
    filter_fields = next(s for s in body["properties"]["filter"]["anyOf"] if s.get("type") == "object")
    assert set(filter_fields["properties"]) == {"queue", "jobType", "errorType", "failedAfter", "failedBefore"}
    export = spec["paths"]["/api/v1/dlq/export.csv"]["get"]["responses"]["200"]["content"]
    assert export == {"text/csv": {"schema": {"type": "string"}}}


async def test_one_call_acts_on_at_most_10000_jobs(api: Api) -> None:
    # 10,003 failed jobs, made in SQL; the oldest three failed first.
    await api.pool.execute(
        "INSERT INTO jobs (id, queue, job_type, status, priority, payload, max_attempts, retry, attempts,"
        " completed_at) SELECT gen_random_uuid(), 'q', 'noop', 'failed', 5, jsonb_build_object('i', i), 1, '{}', 1,"
        " $1::timestamptz + make_interval(secs => i) FROM generate_series(1, 10003) AS i", T0,
    )
    retried = (await api.client.post("/api/v1/dlq/retry", json={"filter": {}})).json()
    assert retried["retried"] == 10_000 and len(set(retried["jobIds"])) == 10_000
    assert await api.count("outbox") == 10_000
    left = await api.pool.fetch("SELECT payload FROM jobs WHERE status = 'failed'")
    assert sorted(r["payload"]["i"] for r in left) == [1, 2, 3]  # newest failures first
    assert (await api.client.post("/api/v1/dlq/retry", json={"filter": {}})).json()["retried"] == 3
    await api.pool.execute("UPDATE jobs SET status = 'failed'")
    assert (await api.client.post("/api/v1/dlq/delete", json={"filter": {}})).json() == {"deleted": 10_000}
    assert (await api.client.post("/api/v1/dlq/delete", json={"filter": {}})).json() == {"deleted": 3}
    assert await api.count("jobs") == 0
