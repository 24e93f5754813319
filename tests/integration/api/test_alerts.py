"""/api/v1/alerts and /api/v1/alert-rules: CRUD, validation (nothing stored), scopes and tenancy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from tests.integration.api.conftest import Api, bearer

RULES = "/api/v1/alert-rules"
RULE = {"name": "slow mail", "queue": "mail", "metric": "p95_duration_ms", "op": ">", "threshold": 2500, "forS": 60}
INSERT_ALERT = """
INSERT INTO alerts (alert_id, tenant, kind, queue, job_type, status, severity, opened_at, resolved_at, details)
VALUES ($1, $2, $3, $4, 'send', $5, 'warning', $6, $7, '{"n": 1}')
"""


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(RULES, json={**RULE, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{RULES}/{body['id']}"
    return body


async def key(api: Api, tenant: str, *scopes: Scope) -> dict[str, str]:
    return bearer(await create_api_key(api.pool, tenant, frozenset(scopes), "test"))


async def test_rule_crud(api: Api) -> None:
    body = await create(api, webhookUrl="https://hooks.example.com/a")
    assert {k: body[k] for k in RULE} == RULE
    assert (body["jobType"], body["webhookUrl"]) == (None, "https://hooks.example.com/a")
    assert (await api.client.get(f"{RULES}/{body['id']}")).json() == body
    assert (await api.client.get(RULES)).json() == {"items": [body]}

    response = await api.client.patch(f"{RULES}/{body['id']}", json={"threshold": 0.5, "metric": "failure_rate",
                                                                       "webhookUrl": None})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["metric"], changed["threshold"], changed["webhookUrl"], changed["name"]) == (
        "failure_rate", 0.5, None, "slow mail")
    assert (await api.client.get(f"{RULES}/{body['id']}")).json() == changed

    assert (await api.client.delete(f"{RULES}/{body['id']}")).status_code == 204
    for response in (await api.client.get(f"{RULES}/{body['id']}"), await api.client.delete(f"{RULES}/{body['id']}"),
                     await api.client.patch(f"{RULES}/{body['id']}", json={"forS": 1}),
                     await api.client.get(f"{RULES}/not-a-uuid")):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("fields", "field"), [
    ({"metric": "latency"}, "metric"),
    ({"op": ">="}, "op"),
    ({"threshold": -1}, "threshold"),
    ({"threshold": "5"}, "threshold"),
    ({"forS": 1.5}, "forS"),
    ({"forS": -1}, "forS"),
    ({"webhookUrl": "ftp://example.com/x"}, "webhookUrl"),
    ({"name": ""}, "name"),
])
async def test_bad_fields_are_named_and_nothing_is_stored(api: Api, fields: dict[str, Any], field: str) -> None:
    response = await api.client.post(RULES, json={**RULE, **fields})
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await api.pool.fetchval("SELECT count(*) FROM alert_rules") == 0


async def test_a_bad_patch_changes_nothing(api: Api) -> None:
    body = await create(api)
    for patch, field in (({"op": "!"}, "op"), ({"metric": None}, "metric"), ({"threshold": True}, "threshold")):
        response = await api.client.patch(f"{RULES}/{body['id']}", json=patch)
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    assert (await api.client.get(f"{RULES}/{body['id']}")).json() == body


async def test_rules_need_admin_and_stay_in_their_tenant(api: Api) -> None:
    body = await create(api)
    reader = await key(api, "default", Scope.READ, Scope.SUBMIT)
    assert (await api.client.get(RULES, headers=reader)).status_code == 403
    assert (await api.client.post(RULES, json=RULE, headers=reader)).status_code == 403
    other = await key(api, "other", Scope.ADMIN, Scope.READ)
    assert (await api.client.get(f"{RULES}/{body['id']}", headers=other)).status_code == 404
    assert (await api.client.delete(f"{RULES}/{body['id']}", headers=other)).status_code == 404
    assert (await api.client.get(RULES, headers=other)).json() == {"items": []}
    assert (await api.anonymous.get(RULES)).status_code == 401


async def test_alerts_are_listed_to_whom_they_concern(api: Api) -> None:
    await api.submit(queue="mail")  # the default tenant has jobs in `mail`, none in `billing`
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    ids = {name: uuid.uuid4() for name in ("mine", "queue", "elsewhere", "theirs", "resolved")}
    for name, tenant, kind, queue, status, minutes in (
        ("mine", "default", "dead_letter", "mail", "open", 1),
        ("queue", None, "failure_rate", "mail", "open", 2),
        ("elsewhere", None, "duration", "billing", "open", 3),
        ("theirs", "other", "rule", "mail", "open", 4),
        ("resolved", "default", "rule", "mail", "resolved", 5),
    ):
        opened = t0 + timedelta(minutes=minutes)
        await api.pool.execute(INSERT_ALERT, ids[name], tenant, kind, queue, status, opened,
                               opened + timedelta(seconds=30) if status == "resolved" else None)

    reader = await key(api, "default", Scope.READ)
    seen = (await api.client.get("/api/v1/alerts", headers=reader)).json()["items"]
    assert [a["alertId"] for a in seen] == [str(ids[n]) for n in ("resolved", "queue", "mine")]
    assert set(seen[0]) == {"alertId", "kind", "queue", "jobType", "status", "severity", "openedAt", "resolvedAt",
                            "details"}
    assert seen[0]["resolvedAt"] is not None and seen[0]["details"] == {"n": 1}
    open_only = (await api.client.get("/api/v1/alerts?status=open", headers=reader)).json()["items"]
    assert [a["alertId"] for a in open_only] == [str(ids["queue"]), str(ids["mine"])]
    resolved = (await api.client.get("/api/v1/alerts?status=resolved&limit=1", headers=reader)).json()["items"]
    assert [a["alertId"] for a in resolved] == [str(ids["resolved"])]
    # `cluster` reads across tenants.
    everything = (await api.client.get("/api/v1/alerts")).json()["items"]
    assert len(everything) == 5
    for bad in ("status=closed", "limit=0", "limit=501"):
        response = await api.client.get(f"/api/v1/alerts?{bad}", headers=reader)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == bad.split("=")[0]
    no_read = await key(api, "default", Scope.SUBMIT)
    assert (await api.client.get("/api/v1/alerts", headers=no_read)).status_code == 403
