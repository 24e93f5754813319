"""The principal: API keys, scopes (DESIGN §10) and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.api.http.principal import PrincipalResolver
from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from shared.auth.resolve import AuthenticationError
from tests.integration.api.conftest import Api, bearer

JOB = {"queue": "q", "jobType": "noop"}


async def key_with(api: Api, *scopes: Scope, tenant: str = "default") -> str:
    return await create_api_key(api.pool, tenant, frozenset(scopes), "t")


async def test_required_auth_refuses_anonymous_calls(api_factory: Any) -> None:
    api: Api = await api_factory(auth_required=True)
    job_id = await api.submit()
    for method, path in (("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("GET", f"/api/v1/jobs/{uuid.uuid4()}"),
                         ("GET", f"/api/v1/jobs/{job_id}"), ("DELETE", f"/api/v1/jobs/{job_id}"),
                         ("POST", f"/api/v1/jobs/{job_id}/retry"), ("GET", f"/api/v1/jobs/{job_id}/events"),
                         ("POST", "/api/v1/job-batches"), ("GET", f"/api/v1/job-batches/{uuid.uuid4()}")):
        response = await api.anonymous.request(method, path, json=JOB)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
    key = await key_with(api, Scope.SUBMIT, Scope.READ)
    assert (await api.anonymous.post("/api/v1/jobs", json=JOB, headers=bearer(key))).status_code == 201
    assert await api.count("jobs") == 2
    assert (await api.anonymous.get(f"/api/v1/jobs/{job_id}")).status_code == 401
    # Health and metrics stay open on purpose: probes and scrapers carry no key.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await api.anonymous.get(path)).status_code == 200, path


async def test_without_auth_no_key_is_the_default_admin(api_factory: Any) -> None:
    api: Api = await api_factory(auth_required=False)
    created = await api.anonymous.post("/api/v1/jobs", json=JOB)
    assert created.status_code == 201
    job_id = created.json()["jobId"]
    assert (await api.anonymous.get(f"/api/v1/jobs/{job_id}")).status_code == 200
    assert (await api.anonymous.delete(f"/api/v1/jobs/{job_id}")).status_code == 200
    assert await api.pool.fetchval("SELECT tenant FROM jobs WHERE id = $1", uuid.UUID(job_id)) == "default"


async def test_unknown_key_is_401_even_when_auth_is_off(api_factory: Any) -> None:
    api: Api = await api_factory(auth_required=False)
    for header in ("Bearer cvk_nope", "Basic dXNlcjpwYXNz", "Bearer "):
        response = await api.anonymous.post("/api/v1/jobs", json=JOB, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["content-type"] == "application/problem+json"
    assert await api.count("jobs") == 0


async def test_scopes(api: Api) -> None:
    reader = await key_with(api, Scope.READ)
    submitter = await key_with(api, Scope.SUBMIT)
    job_id = await api.submit()
    assert (await api.client.post("/api/v1/jobs", json=JOB, headers=bearer(reader))).status_code == 403
    assert (await api.client.delete(f"/api/v1/jobs/{job_id}", headers=bearer(reader))).status_code == 403
    assert (await api.client.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(reader))).status_code == 403
    assert (await api.client.get(f"/api/v1/jobs/{job_id}", headers=bearer(reader))).status_code == 200
    assert (await api.client.get(f"/api/v1/jobs/{job_id}", headers=bearer(submitter))).status_code == 403
    forbidden = await api.client.post("/api/v1/job-batches", json={"jobs": [JOB]}, headers=bearer(reader))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert await api.count("jobs") == 1


@pytest.mark.parametrize(("held", "needed", "method", "path"), [
    (Scope.READ, Scope.SUBMIT, "POST", "/api/v1/jobs"),
    (Scope.READ, Scope.SUBMIT, "POST", "/api/v1/job-batches"),
    (Scope.READ, Scope.SUBMIT, "DELETE", "/api/v1/jobs/{job}"),
    (Scope.READ, Scope.SUBMIT, "POST", "/api/v1/jobs/{job}/retry"),
    (Scope.SUBMIT, Scope.READ, "GET", "/api/v1/jobs"),
    (Scope.SUBMIT, Scope.READ, "GET", "/api/v1/jobs/{job}"),
    (Scope.SUBMIT, Scope.READ, "GET", "/api/v1/jobs/{job}/events"),
    (Scope.SUBMIT, Scope.READ, "GET", "/api/v1/job-batches/{batch}"),
    # `cluster` spans tenants' shared resources; it implies neither submitting nor reading jobs.
    (Scope.CLUSTER, Scope.SUBMIT, "POST", "/api/v1/jobs"),
    (Scope.CLUSTER, Scope.READ, "GET", "/api/v1/jobs/{job}"),
])
async def test_a_missing_scope_is_403_naming_it(
    api: Api, held: Scope, needed: Scope, method: str, path: str
) -> None:
    job_id = await api.submit()
    batch = (await api.client.post("/api/v1/job-batches", json={"jobs": [JOB]})).json()["batchId"]
    before = (await api.count("jobs"), await api.count("outbox"))
    key = await key_with(api, held)
    body = {"jobs": [JOB]} if path.endswith("batches") else JOB
    response = await api.client.request(
        method, path.format(job=job_id, batch=batch), json=body if method == "POST" else None, headers=bearer(key)
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 403 and problem["type"] == "urn:conveyor:problem:forbidden"
    assert f"'{needed.value}'" in problem["detail"]
    assert (await api.count("jobs"), await api.count("outbox")) == before
    assert (await api.client.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "pending"


async def test_a_read_only_key_cannot_submit_and_stores_nothing(api: Api) -> None:
    reader = await key_with(api, Scope.READ)
    for path, body in (("/api/v1/jobs", JOB), ("/api/v1/job-batches", {"jobs": [JOB, JOB]})):
        response = await api.anonymous.post(path, json=body, headers=bearer(reader))
        assert response.status_code == 403, path
        assert "'submit'" in response.json()["detail"]
    assert await api.count("jobs") == 0 and await api.count("outbox") == 0 and await api.count("job_batches") == 0
    assert (await api.anonymous.get("/api/v1/jobs", headers=bearer(reader))).json()["items"] == []


async def test_admin_implies_submit_and_read(api: Api) -> None:
    admin = await key_with(api, Scope.ADMIN)
    created = await api.anonymous.post("/api/v1/jobs", json=JOB, headers=bearer(admin))
    assert created.status_code == 201
    job_id = created.json()["jobId"]
    assert (await api.anonymous.get(f"/api/v1/jobs/{job_id}", headers=bearer(admin))).status_code == 200
    assert (await api.anonymous.delete(f"/api/v1/jobs/{job_id}", headers=bearer(admin))).status_code == 200
    assert (await api.anonymous.post(f"/api/v1/jobs/{job_id}/retry", headers=bearer(admin))).status_code == 200


async def test_a_key_of_tenant_b_gets_404_for_a_job_of_tenant_a(api: Api) -> None:
    tenant_a = await key_with(api, Scope.SUBMIT, Scope.READ, tenant="tenant-a")
    tenant_b = await key_with(api, Scope.ADMIN, tenant="tenant-b")
    created = await api.anonymous.post("/api/v1/jobs", json=JOB, headers=bearer(tenant_a))
    job_id = created.json()["jobId"]
    batch = (await api.anonymous.post("/api/v1/job-batches", json={"jobs": [JOB]}, headers=bearer(tenant_a))).json()
    for method, path in (("GET", f"/api/v1/jobs/{job_id}"), ("GET", f"/api/v1/jobs/{job_id}/events"),
                         ("GET", f"/api/v1/jobs/{job_id}/deliveries"),
                         ("DELETE", f"/api/v1/jobs/{job_id}"), ("POST", f"/api/v1/jobs/{job_id}/retry"),
                         ("GET", f"/api/v1/job-batches/{batch['batchId']}")):
        response = await api.anonymous.request(method, path, headers=bearer(tenant_b))
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        # The same answer as for an id that names nothing: no hint that the job exists.
        assert response.json()["detail"] in (f"no job {job_id}", f"no batch {batch['batchId']}")
    listed = (await api.anonymous.get("/api/v1/jobs", headers=bearer(tenant_b))).json()["items"]
    assert listed == []
    job = (await api.anonymous.get(f"/api/v1/jobs/{job_id}", headers=bearer(tenant_a))).json()
    assert job["status"] == "pending" and job["cancelRequested"] is False


async def test_tenants_see_only_their_own_jobs(api: Api) -> None:
    acme = await key_with(api, Scope.SUBMIT, Scope.READ, tenant="acme")
    mine = await api.submit()
    theirs = (await api.client.post("/api/v1/jobs", json=JOB, headers=bearer(acme))).json()["jobId"]
    batch = (await api.client.post("/api/v1/job-batches", json={"jobs": [JOB]}, headers=bearer(acme))).json()

    assert (await api.client.get(f"/api/v1/jobs/{theirs}")).status_code == 404
    assert (await api.client.get(f"/api/v1/jobs/{theirs}/events")).status_code == 404
    assert (await api.client.delete(f"/api/v1/jobs/{theirs}")).status_code == 404
    assert (await api.client.post(f"/api/v1/jobs/{theirs}/retry")).status_code == 404
    assert (await api.client.get(f"/api/v1/job-batches/{batch['batchId']}")).status_code == 404
    listed = (await api.client.get("/api/v1/jobs")).json()["items"]
    assert [i["jobId"] for i in listed] == [mine]
    acme_listed = (await api.client.get("/api/v1/jobs", headers=bearer(acme))).json()["items"]
    assert mine not in [i["jobId"] for i in acme_listed]
    # Depending on another tenant's job is depending on a job that does not exist.
    response = await api.client.post("/api/v1/jobs", json={**JOB, "dependsOn": [theirs]})
    assert response.status_code == 422
    tenant = await api.pool.fetchval("SELECT tenant FROM jobs WHERE id = $1", uuid.UUID(theirs))
    assert tenant == "acme"
    header = await api.pool.fetchval("SELECT headers->>'tenant' FROM outbox WHERE key = $1", theirs)
    assert header == "acme"


class _CountingPool:
    """The real pool, counting the key lookups that reach Postgres."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.lookups = 0

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        self.lookups += 1
        return await self.pool.fetchrow(*args, **kwargs)


async def test_an_expired_key_is_looked_up_once_however_many_requests_wait_for_it(api: Api) -> None:
    counting = _CountingPool(api.pool)
    resolver = PrincipalResolver(counting, auth_required=True, ttl_s=0.0)  # type: ignore[arg-type]
    key = await key_with(api, Scope.READ, tenant="acme")
    principals = await asyncio.gather(*(resolver.resolve(key) for _ in range(20)))
    assert {(p.tenant, p.scopes) for p in principals} == {("acme", frozenset({Scope.READ}))}
    assert counting.lookups == 1
    await resolver.resolve(key)  # expired at once (ttl 0): a new lookup
    assert counting.lookups == 2
    results = await asyncio.gather(*(resolver.resolve("cvk_unknown") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results) and counting.lookups == 3
