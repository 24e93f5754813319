"""/api/v1/queues (DESIGN §5, §10): config in Postgres and Redis, pause, scopes, maxLength, queue defaults."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from deploy.local.servers import free_port
from services.api.queues.admission import FALLBACK_RETRY_AFTER_S, retry_after_s
from services.api.queues.rules import QueueRulesCache
from shared.auth.keys import create_api_key
from shared.auth.principal import DEFAULT_TENANT, Scope
from shared.dispatch.config import Aging, DispatchConfig, Limit
from tests.fixtures.polling import poll_until
from tests.integration.api.conftest import Api, bearer

BASE = "/api/v1/queues"
CONFIG_KEYS = {"rateLimit", "keyRateLimit", "concurrency", "keyConcurrency", "maxLength", "retry", "maxAttempts",
               "aging", "fairnessWeights"}
COUNT_KEYS = {"pending", "blocked", "scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled"}


async def put(api: Api, name: str, body: Any, client: httpx.AsyncClient | None = None) -> httpx.Response:
    return await (client or api.client).put(f"{BASE}/{name}", json=body)


async def client_with(api: Api, *scopes: Scope, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    key = await create_api_key(api.pool, tenant, frozenset(scopes), "queues-test")
    transport = httpx.ASGITransport(app=api.app)
    return httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=bearer(key))


async def test_unknown_queue_is_404_and_the_list_is_empty(api: Api) -> None:
    missing = await api.client.get(f"{BASE}/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await api.client.get(BASE)).json() == {"items": []}


async def test_put_creates_the_queue_and_mirrors_it_into_redis(api: Api) -> None:
    body = {"rateLimit": {"limit": 5, "periodMs": 1000}, "concurrency": 2, "maxLength": 100,
            "aging": {"everyMs": 60000, "step": 1}, "fairnessWeights": {"tenant-a": 3}}
    response = await put(api, "emails", body)
    assert response.status_code == 200, response.text
    queue = response.json()
    assert set(queue) == {"name", "paused", "config", "counts", "oldestWaitingAgeMs", "throughputPerMin"}
    assert queue["name"] == "emails" and queue["paused"] is False
    assert set(queue["config"]) == CONFIG_KEYS
    assert queue["config"] == {
        "rateLimit": {"limit": 5, "periodMs": 1000}, "keyRateLimit": None, "concurrency": 2, "keyConcurrency": None,
        "maxLength": 100, "retry": None, "maxAttempts": None, "aging": {"everyMs": 60000, "step": 1},
        "fairnessWeights": {"tenant-a": 3},
    }
    assert queue["counts"] == dict.fromkeys(COUNT_KEYS, 0)
    assert queue["oldestWaitingAgeMs"] is None and queue["throughputPerMin"] == 0
    # Applied before the answer: the Redis hash pop.lua obeys already says so.
    assert await api.dispatcher.dispatch_config("emails") == DispatchConfig(
        rate_limit=Limit(5, 1000), concurrency=2, aging=Aging(60000, 1), fairness_weights={"tenant-a": 3},
    )
    assert (await api.client.get(f"{BASE}/emails")).json() == queue
    assert (await api.client.get(BASE)).json() == {"items": [queue]}


async def test_partial_put_keeps_what_is_left_out_and_null_clears(api: Api) -> None:
    await put(api, "q", {"rateLimit": {"limit": 5, "periodMs": 1000}, "maxLength": 10, "concurrency": 3})
    second = (await put(api, "q", {"concurrency": 4, "retry": {"strategy": "fixed", "baseDelayMs": 500}})).json()
    assert second["config"]["rateLimit"] == {"limit": 5, "periodMs": 1000}
    assert second["config"]["maxLength"] == 10 and second["config"]["concurrency"] == 4
    assert second["config"]["retry"] == {"strategy": "fixed", "baseDelayMs": 500, "maxDelayMs": 300000,
                                         "factor": 2.0, "jitter": True}
    third = (await put(api, "q", {"rateLimit": None, "maxLength": None})).json()
    assert third["config"]["rateLimit"] is None and third["config"]["maxLength"] is None
    assert third["config"]["concurrency"] == 4
    mirrored = await api.dispatcher.dispatch_config("q")
    assert mirrored.rate_limit is None and mirrored.concurrency == 4
    assert mirrored.retry_json is not None and '"fixed"' in mirrored.retry_json
    empty = (await put(api, "q", {})).json()  # an empty PUT changes nothing
    assert empty["config"] == third["config"]


async def test_pause_and_resume(api: Api) -> None:
    await put(api, "q", {"concurrency": 1})
    paused = await api.client.post(f"{BASE}/q/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["config"]["concurrency"] == 1  # pausing keeps the config
    assert (await api.dispatcher.dispatch_config("q")).paused
    # A paused queue accepts jobs.
    job_id = await api.submit()
    assert (await api.client.get(f"{BASE}/q")).json()["counts"]["pending"] == 1
    resumed = await api.client.post(f"{BASE}/q/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    mirrored = await api.dispatcher.dispatch_config("q")
    assert not mirrored.paused and mirrored.concurrency == 1
    assert job_id
    # Pause creates a queue never seen before.
    assert (await api.client.post(f"{BASE}/fresh/pause")).json()["paused"] is True


async def test_scopes_and_tenant_counts(api: Api) -> None:
    reader = await client_with(api, Scope.READ, Scope.SUBMIT)
    other = await client_with(api, Scope.READ, Scope.SUBMIT, tenant="other")
    async with reader, other:
        for method, path in (("PUT", f"{BASE}/q"), ("POST", f"{BASE}/q/pause"), ("POST", f"{BASE}/q/resume")):
            refused = await reader.request(method, path, json={} if method == "PUT" else None)
            assert refused.status_code == 403, (method, path)
            assert "cluster" in refused.json()["detail"]
        assert await api.count("queues") == 0  # refused before anything was written
        for _ in range(2):
            assert (await reader.post("/api/v1/jobs", json={"queue": "shared", "jobType": "noop"})).status_code == 201
        assert (await other.post("/api/v1/jobs", json={"queue": "shared", "jobType": "noop"})).status_code == 201
        assert (await other.post("/api/v1/jobs", json={"queue": "theirs", "jobType": "noop"})).status_code == 201
        mine = (await reader.get(f"{BASE}/shared")).json()
        assert mine["counts"]["pending"] == 2  # the caller's tenant's jobs only
        assert [q["name"] for q in (await reader.get(BASE)).json()["items"]] == ["shared"]
        assert (await reader.get(f"{BASE}/theirs")).status_code == 404  # another tenant's queue is not shown
        everyone = (await api.client.get(f"{BASE}/shared")).json()  # a `cluster` key reads across tenants
        assert everyone["counts"]["pending"] == 3
        assert [q["name"] for q in (await api.client.get(BASE)).json()["items"]] == ["shared", "theirs"]
        assert (await api.anonymous.get(BASE)).status_code == 401


BAD_CONFIGS: list[tuple[Any, str]] = [
    ({"rateLimit": {"limit": -1, "periodMs": 1000}}, "rateLimit.limit"),
    ({"rateLimit": {"limit": 0, "periodMs": 1000}}, "rateLimit.limit"),
    ({"rateLimit": {"limit": 5, "periodMs": 0}}, "rateLimit.periodMs"),
    ({"rateLimit": {"limit": 5}}, "rateLimit.periodMs"),
    ({"rateLimit": {"limit": 5, "periodMs": 1000, "burst": 2}}, "rateLimit.burst"),
    ({"rateLimit": {"limit": 2.5, "periodMs": 1000}}, "rateLimit.limit"),
    ({"rateLimit": {"limit": 10_000_000, "periodMs": 1000}}, "rateLimit.limit"),
    ({"keyRateLimit": {"limit": 5, "periodMs": "1s"}}, "keyRateLimit.periodMs"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": -3}, "concurrency"),
    ({"concurrency": 1.5}, "concurrency"),
    ({"concurrency": "2"}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"keyConcurrency": 0}, "keyConcurrency"),
    ({"maxLength": 0}, "maxLength"),
    ({"maxLength": 2_000_000_000}, "maxLength"),
    ({"maxAttempts": 0}, "maxAttempts"),
    ({"maxAttempts": 101}, "maxAttempts"),
    ({"retry": {"strategy": "sometimes"}}, "retry.strategy"),
    ({"retry": {"baseDelayMs": -1}}, "retry.baseDelayMs"),
    ({"retry": {"strategy": "fixed", "maxTries": 3}}, "retry.maxTries"),
    ({"aging": {"everyMs": 0, "step": 1}}, "aging.everyMs"),
    ({"aging": {"everyMs": 1000, "step": 11}}, "aging.step"),
    ({"fairnessWeights": {"a": 0}}, "fairnessWeights.a"),
    ({"fairnessWeights": {"a": 1001}}, "fairnessWeights.a"),
    ({"fairnessWeights": {"k" * 129: 2}}, "fairnessWeights"),
    ({"fairnessWeights": {"": 2}}, "fairnessWeights"),
    ({"fairnessWeights": [1]}, "fairnessWeights"),
    ({"priorityAging": True}, "priorityAging"),
    ([{"concurrency": 1}], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_CONFIGS)
async def test_bad_config_is_422_naming_the_field_and_changes_nothing(api: Api, body: Any, field: str) -> None:
    await put(api, "q", {"concurrency": 7})
    response = await put(api, "q", body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields), fields
    queue = (await api.client.get(f"{BASE}/q")).json()
    assert queue["config"]["concurrency"] == 7 and queue["config"]["rateLimit"] is None
    assert await api.dispatcher.dispatch_config("q") == DispatchConfig(concurrency=7)


@pytest.mark.parametrize("name", ["Bad Queue", "-dash", "a" * 65, "UPPER"])
async def test_bad_queue_name_is_422(api: Api, name: str) -> None:
    for method, path in (("PUT", f"{BASE}/{name}"), ("POST", f"{BASE}/{name}/pause"), ("GET", f"{BASE}/{name}")):
        response = await api.client.request(method, path, json={} if method == "PUT" else None)
        assert response.status_code == 422, (method, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["name"]
    assert await api.count("queues") == 0


async def test_redis_down_answers_503_and_changes_nothing(api_factory: Any) -> None:
    api: Api = await api_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    response = await put(api, "q", {"concurrency": 2})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "nothing was changed" in response.json()["detail"]
    assert await api.count("queues") == 0
    assert (await api.client.post(f"{BASE}/q/pause")).status_code == 503
    assert await api.count("queues") == 0


async def test_counts_and_figures_of_a_queue_with_jobs_and_no_config(api: Api) -> None:
    ids = [await api.submit() for _ in range(3)]
    await api.pool.execute(
        "UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = $1::uuid", ids[0],
    )
    queue = (await api.client.get(f"{BASE}/q")).json()
    assert queue["counts"] == {**dict.fromkeys(COUNT_KEYS, 0), "pending": 2, "completed": 1}
    assert queue["config"] == dict.fromkeys(CONFIG_KEYS)
    assert queue["paused"] is False and queue["throughputPerMin"] == 1
    assert queue["oldestWaitingAgeMs"] is not None and 0 <= queue["oldestWaitingAgeMs"] < 60_000


# ---- maxLength ----


async def test_full_queue_answers_429_with_retry_after_and_stores_nothing(api: Api) -> None:
    await put(api, "q", {"maxLength": 2})
    first = await api.submit()
    await api.submit()
    jobs, outbox = await api.count("jobs"), await api.count("outbox")
    full = await api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"},
                                 headers={"Idempotency-Key": "after-full"})
    assert full.status_code == 429, full.text
    assert full.headers["content-type"] == "application/problem+json"
    assert full.headers["retry-after"] == str(FALLBACK_RETRY_AFTER_S)  # nothing drained yet
    assert (await api.count("jobs"), await api.count("outbox")) == (jobs, outbox)
    # Other queues are not limited.
    assert (await api.client.post("/api/v1/jobs", json={"queue": "other", "jobType": "noop"})).status_code == 201
    # Room again once one leaves the backlog: the same idempotency key is free (it was not stored).
    assert (await api.client.delete(f"/api/v1/jobs/{first}")).status_code == 200
    again = await api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"},
                                  headers={"Idempotency-Key": "after-full"})
    assert again.status_code == 201
    # A replay of a stored job is still answered while the queue is full.
    replay = await api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"},
                                   headers={"Idempotency-Key": "after-full"})
    assert replay.status_code == 200 and replay.json()["jobId"] == again.json()["jobId"]


async def test_retry_after_follows_the_measured_drain_rate(api: Api) -> None:
    await put(api, "q", {"maxLength": 1})
    await api.submit()
    # 600 starts over the last minute or two: 5-10 per second.
    await api.pool.execute(
        "INSERT INTO queue_minute_stats (queue, minute, outcome, count) "
        "VALUES ('q', date_trunc('minute', now()) - interval '1 minute', 'started', 600)",
    )
    full = await api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"})
    assert full.status_code == 429
    assert full.headers["retry-after"] == "1"
    assert retry_after_s(100, 5.0) == 20 and retry_after_s(1, 0.001) == 1000 and retry_after_s(3, None) == 30
    assert retry_after_s(10**9, 0.01) == 3600


async def test_max_length_is_exact_under_concurrent_submissions(api_factory: Any) -> None:
    api: Api = await api_factory(db_pool_max=10)
    await put(api, "q", {"maxLength": 20})
    responses = await asyncio.gather(*[
        api.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop", "payload": {"n": n}})
        for n in range(50)
    ])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 20 and statuses.count(429) == 30, statuses
    assert await api.count("jobs") == 20


async def test_batches_respect_max_length(api: Api) -> None:
    await put(api, "q", {"maxLength": 3})
    await api.submit()
    jobs = [{"queue": "q", "jobType": "noop"}] * 3
    full = await api.client.post("/api/v1/job-batches", json={"jobs": jobs})
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
    never = await api.client.post("/api/v1/job-batches", json={"jobs": [{"queue": "q", "jobType": "noop"}] * 4})
    assert never.status_code == 409 and [e["field"] for e in never.json()["errors"]] == ["jobs"]
    assert await api.count("jobs") == 1 and await api.count("job_batches") == 0
    fits = await api.client.post("/api/v1/job-batches", json={"jobs": jobs[:2]})
    assert fits.status_code == 201


async def test_manual_retry_is_not_held_by_max_length(api: Api) -> None:
    # An operator bringing a failed job back is not a producer flooding the queue (ADR 0005).
    failed = await api.submit()
    await api.pool.execute("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = $1::uuid", failed)
    await put(api, "q", {"maxLength": 1})
    await api.submit()
    assert (await api.client.post(f"/api/v1/jobs/{failed}/retry")).status_code == 200


# ---- queue defaults at submission ----


async def test_max_attempts_comes_from_the_queue_when_the_job_gives_none(api: Api) -> None:
    await put(api, "q", {"maxAttempts": 7, "retry": {"strategy": "linear"}})
    default = await api.submit()
    own = await api.submit(maxAttempts=2)
    batch = await api.client.post("/api/v1/job-batches", json={"jobs": [{"queue": "q", "jobType": "noop"}]})
    [batched] = batch.json()["jobIds"]
    for job_id, attempts in ((default, 7), (own, 2), (batched, 7)):
        job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["maxAttempts"] == attempts
        assert job["retry"] is None  # the queue's retry policy is resolved by the worker, not copied
    assert (await api.pool.fetchval("SELECT count(*) FROM jobs WHERE retry IS NULL")) == 3
    await put(api, "q", {"maxAttempts": None})
    assert (await api.client.get(f"/api/v1/jobs/{await api.submit()}")).json()["maxAttempts"] == 3


async def test_scheduling_keys_are_stored_and_echoed(api: Api) -> None:
    job_id = await api.submit(rateLimitKey="acct-1", concurrency_key="acct 2", fairnessKey="tenant-a")
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["rateLimitKey"], job["concurrencyKey"], job["fairnessKey"]) == ("acct-1", "acct 2", "tenant-a")
    row = await api.pool.fetchrow("SELECT rate_limit_key, concurrency_key, fairness_key FROM jobs")
    assert tuple(row) == ("acct-1", "acct 2", "tenant-a")
    plain = (await api.client.get(f"/api/v1/jobs/{await api.submit()}")).json()
    assert (plain["rateLimitKey"], plain["concurrencyKey"], plain["fairnessKey"]) == (None, None, None)
    batch = await api.client.post("/api/v1/job-batches", json={"jobs": [
        {"queue": "q", "jobType": "noop", "fairnessKey": "b", "rateLimitKey": "r", "concurrencyKey": "c"},
    ]})
    [batched] = batch.json()["jobIds"]
    listed = (await api.client.get("/api/v1/jobs", params={"q": batched})).json()["items"][0]
    assert (listed["rateLimitKey"], listed["concurrencyKey"], listed["fairnessKey"]) == ("r", "c", "b")


# ---- the cache of every replica ----


async def test_another_replica_sees_a_put_within_a_moment(api_factory: Any, database_url: str) -> None:
    first: Api = await api_factory()
    second: Api = await api_factory()
    listener = asyncio.create_task(second.app.state.deps.queue_rules.listen(database_url))
    try:
        await second.submit()  # the second replica now holds a snapshot without any limit
        await asyncio.sleep(0.5)  # its listener is up
        assert (await put(first, "q", {"maxLength": 1})).status_code == 200

        rules: QueueRulesCache = second.app.state.deps.queue_rules

        async def max_length() -> int | None:
            return (await rules.get("q")).max_length

        # Well within the snapshot's TTL (30 s while listening): the NOTIFY did it.
        assert await poll_until(max_length, lambda n: n == 1, timeout_s=3, every_s=0.05) == 1
        refused = await second.client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"})
        assert refused.status_code == 429
        assert await second.count("jobs") == 1
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_an_api_process_sees_a_put_made_through_another(api: Api, cluster_factory: Any) -> None:
    # The real service (its listener spawned by ApiService) on this test's database and Redis prefix.
    async with cluster_factory(services=("api",)) as cluster, httpx.AsyncClient(
        base_url=f"{cluster.api_url}/api/v1", headers=cluster.auth_headers, timeout=10,
    ) as process:
        body = {"queue": "q", "jobType": "noop"}
        assert (await process.post("/jobs", json=body)).status_code == 201  # it holds a snapshot without limits
        await asyncio.sleep(0.5)
        assert (await put(api, "q", {"maxLength": 1})).status_code == 200
        started = asyncio.get_running_loop().time()

        async def status() -> int:
            return (await process.post("/jobs", json=body)).status_code

        assert await poll_until(status, lambda s: s == 429, timeout_s=10, every_s=0.1) == 429
        # Well before the snapshot would have expired on its own (5 s, or 30 s with a listener up).
        assert asyncio.get_running_loop().time() - started < 3
