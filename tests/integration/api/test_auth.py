"""The principal: API keys, scopes and tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from tests.integration.api.conftest import Api

JOB = {"queue": "q", "jobType": "noop"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_required_auth_refuses_anonymous_calls(api_factory: Any) -> None:
    api: Api = await api_factory(auth_required=True)
    for method, path in (("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("GET", f"/api/v1/jobs/{uuid.uuid4()}")):
        response = await api.client.request(method, path, json=JOB)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
    key = await create_api_key(api.pool, "default", frozenset({Scope.SUBMIT, Scope.READ}), "t")
    assert (await api.client.post("/api/v1/jobs", json=JOB, headers=bearer(key))).status_code == 201
    assert await api.count("jobs") == 1


async def test_unknown_key_is_401_even_when_auth_is_optional(api: Api) -> None:
    for header in ("Bearer cvk_nope", "Basic dXNlcjpwYXNz", "Bearer "):
        response = await api.client.post("/api/v1/jobs", json=JOB, headers={"Authorization": header})
        assert response.status_code == 401, header
    assert await api.count("jobs") == 0


async def test_scopes(api: Api) -> None:
    reader = await create_api_key(api.pool, "default", frozenset({Scope.READ}), "r")
    submitter = await create_api_key(api.pool, "default", frozenset({Scope.SUBMIT}), "s")
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


async def test_tenants_see_only_their_own_jobs(api: Api) -> None:
    acme = await create_api_key(api.pool, "acme", frozenset({Scope.SUBMIT, Scope.READ}), "a")
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
