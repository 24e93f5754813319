"""GET /jobs/{id}/deliveries: the webhook deliveries the notifier recorded, for the caller's tenant only."""

from __future__ import annotations

import uuid

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from tests.integration.api.conftest import Api, bearer

INSERT = """
INSERT INTO webhook_deliveries (id, tenant, job_id, event_type, event_id, url, body, state, attempts, created_at)
VALUES ($1, $2, $3, $4, $5, $6, '{}', $7, $8, now() + make_interval(secs => $9))
"""


async def test_the_deliveries_of_a_job_oldest_first(api: Api) -> None:
    job_id = await api.submit(callbackUrl="https://hooks.example.com/in")
    jid = uuid.UUID(job_id)
    first, second = uuid.uuid4(), uuid.uuid4()
    tries = [{"at": "2026-01-01T00:00:00+00:00", "status": 500, "error": "HTTP 500", "durationMs": 12},
             {"at": "2026-01-01T00:00:09+00:00", "status": 200, "durationMs": 8}]
    await api.pool.execute(INSERT, second, "default", jid, "failed", uuid.uuid4(), "https://hooks.example.com/in",
                           "pending", [], 1.0)
    await api.pool.execute(INSERT, first, "default", jid, "completed", uuid.uuid4(), "https://hooks.example.com/in",
                           "delivered", tries, 0.0)
    response = await api.client.get(f"/api/v1/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [
        {"deliveryId": str(first), "event": "completed", "url": "https://hooks.example.com/in", "attempts": tries,
         "state": "delivered"},
        {"deliveryId": str(second), "event": "failed", "url": "https://hooks.example.com/in", "attempts": [],
         "state": "pending"},
    ]}


async def test_deliveries_need_read_and_stay_in_the_tenant(api: Api) -> None:
    job_id = await api.submit()
    assert (await api.client.get(f"/api/v1/jobs/{job_id}/deliveries")).json() == {"items": []}
    submit_only = await create_api_key(api.pool, "default", frozenset({Scope.SUBMIT}), "t")
    denied = await api.anonymous.get(f"/api/v1/jobs/{job_id}/deliveries", headers=bearer(submit_only))
    assert denied.status_code == 403
    other = await create_api_key(api.pool, "other", frozenset({Scope.READ}), "t")
    hidden = await api.anonymous.get(f"/api/v1/jobs/{job_id}/deliveries", headers=bearer(other))
    assert hidden.status_code == 404 and hidden.json()["detail"] == f"no job {job_id}"
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        missing = await api.client.get(f"/api/v1/jobs/{bad}/deliveries")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
    assert (await api.anonymous.get(f"/api/v1/jobs/{job_id}/deliveries")).status_code == 401
