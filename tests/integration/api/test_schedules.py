"""/api/v1/scheduled-jobs: CRUD, validation (nothing stored), tenancy and scope, trigger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from tests.integration.api.conftest import Api, bearer

BASE = "/api/v1/scheduled-jobs"
SCHEDULE = {"name": "nightly", "cron": "30 2 * * *", "queue": "q", "jobType": "noop"}


async def stored(api: Api) -> int:
    return int(await api.pool.fetchval("SELECT count(*) FROM schedules"))


@pytest.fixture
async def nothing_stored(api: Api) -> AsyncIterator[Api]:
    yield api
    assert await stored(api) == 0
    for table in ("jobs", "outbox"):
        assert await api.count(table) == 0, table


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(BASE, json={**SCHEDULE, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{BASE}/{body['id']}"
    return body


async def test_create_applies_defaults_and_previews_five_fire_times(api: Api) -> None:
    body = await create(api, payload={"a": 1}, priority="high", tags=["t"])
    assert set(body) == {"id", "name", "cron", "timezone", "enabled", "misfirePolicy", "nextFireTimes",
                         "lastFiredAt", "job"}
    defaults = (body["timezone"], body["enabled"], body["misfirePolicy"], body["lastFiredAt"])
    assert defaults == ("UTC", True, "skip", None)
    times = [datetime.fromisoformat(t) for t in body["nextFireTimes"]]
    assert len(times) == 5 and times == sorted(times) and len(set(times)) == 5
    assert all((t.hour, t.minute, t.second) == (2, 30, 0) and t.utcoffset() is not None for t in times)
    job = body["job"]
    template = (job["queue"], job["jobType"], job["payload"], job["priority"], job["tags"])
    assert template == ("q", "noop", {"a": 1}, 8, ["t"])
    # Not given: each fire takes the queue's maxAttempts (else 3) and the job type's or queue's retry policy.
    assert job["maxAttempts"] is None and job["retry"] is None
    assert (await api.client.get(f"{BASE}/{body['id']}")).json() == body
    assert (await api.client.get(BASE)).json() == {"items": [body]}
    assert await api.count("jobs") == 0  # creating fires nothing


async def test_time_zone_moves_the_fire_times(api: Api) -> None:
    body = await create(api, cron="0 9 * * *", timezone="America/New_York")
    for text in body["nextFireTimes"]:
        utc = datetime.fromisoformat(text)
        assert utc.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert utc.hour in (13, 14)  # 09:00 in New York: EDT or EST


async def test_patch_changes_only_what_it_names(api: Api) -> None:
    body = await create(api)
    response = await api.client.patch(f"{BASE}/{body['id']}", json={"enabled": False, "cron": "*/15 * * * *",
                                                                       "payload": {"b": 2}})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["enabled"], patched["cron"], patched["name"]) == (False, "*/15 * * * *", "nightly")
    assert patched["job"]["payload"] == {"b": 2} and patched["job"]["queue"] == "q"
    times = [datetime.fromisoformat(t) for t in patched["nextFireTimes"]]
    assert len(times) == 5 and all(t.minute % 15 == 0 for t in times)  # shown while disabled too
    assert (await api.client.get(f"{BASE}/{body['id']}")).json() == patched


async def test_bad_patch_stores_nothing(api: Api) -> None:
    body = await create(api)
    for patch, field in (({"cron": "* * *"}, "cron"), ({"timezone": "Nowhere/Else"}, "timezone"),
                         ({"name": None}, "name"), ({"colour": "red"}, "colour")):
        response = await api.client.patch(f"{BASE}/{body['id']}", json=patch)
        assert response.status_code == 422, (patch, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], response.text
    assert (await api.client.get(f"{BASE}/{body['id']}")).json() == body


@pytest.mark.parametrize(("fields", "field"), [
    ({"cron": "* * * *"}, "cron"),
    ({"cron": "* * * * * *"}, "cron"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "0 0 30 2 *"}, "cron"),
    ({"cron": "@daily"}, "cron"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"misfirePolicy": "always"}, "misfirePolicy"),
    ({"enabled": "yes"}, "enabled"),
    ({"priority": 11}, "priority"),
    ({"queue": "Bad Queue"}, "queue"),
    ({"scheduledFor": "2030-01-01T00:00:00Z"}, "scheduledFor"),
    ({"colour": "red"}, "colour"),
])
async def test_bad_input_names_the_field_and_stores_nothing(
    nothing_stored: Api, fields: dict[str, Any], field: str
) -> None:
    response = await nothing_stored.client.post(BASE, json={**SCHEDULE, **fields})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]], response.text


async def test_a_payload_over_the_limit_is_refused(nothing_stored: Api) -> None:
    big = {"x": "y" * (nothing_stored.settings.max_payload_bytes + 1)}
    response = await nothing_stored.client.post(BASE, json={**SCHEDULE, "payload": big})
    assert response.status_code == 413, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["payload"]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/trigger")])
async def test_ids_that_are_not_uuids_name_the_id(api: Api, method: str, suffix: str) -> None:
    response = await api.client.request(method, f"{BASE}/not-a-uuid{suffix}", json={})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["id"]
    response = await api.client.request(method, f"{BASE}/{uuid.uuid4()}{suffix}", json={})
    assert response.status_code == 404, response.text


async def test_delete(api: Api) -> None:
    body = await create(api)
    assert (await api.client.delete(f"{BASE}/{body['id']}")).status_code == 204
    assert (await api.client.get(f"{BASE}/{body['id']}")).status_code == 404
    assert (await api.client.delete(f"{BASE}/{body['id']}")).status_code == 404
    assert await stored(api) == 0


async def test_trigger_a_disabled_schedule_submits_its_job(api: Api) -> None:
    body = await create(api, enabled=False, payload={"n": 1}, timeoutMs=5000)
    response = await api.client.post(f"{BASE}/{body['id']}/trigger")
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["queue"], job["jobType"], job["payload"], job["timeoutMs"], job["status"]) == (
        "q", "noop", {"n": 1}, 5000, "pending")
    events = [orjson.loads(r["value"]) for r in await api.pool.fetch("SELECT value FROM outbox")]
    assert [(e["type"], e["jobId"]) for e in events] == [("submitted", job_id)]
    assert (await api.client.get(f"{BASE}/{body['id']}")).json()["lastFiredAt"] is None


async def test_schedules_belong_to_a_tenant_and_need_admin(api: Api) -> None:
    body = await create(api)
    other = await create_api_key(api.pool, "other", frozenset({Scope.ADMIN}), "t")
    headers = bearer(other)
    assert (await api.anonymous.get(f"{BASE}/{body['id']}", headers=headers)).status_code == 404
    assert (await api.anonymous.get(BASE, headers=headers)).json() == {"items": []}
    assert (await api.anonymous.post(f"{BASE}/{body['id']}/trigger", headers=headers)).status_code == 404
    submitter = await create_api_key(api.pool, "default", frozenset({Scope.SUBMIT, Scope.READ}), "t")
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/{body['id']}"),
                         ("POST", f"{BASE}/{body['id']}/trigger"), ("DELETE", f"{BASE}/{body['id']}")):
        response = await api.anonymous.request(method, path, json=SCHEDULE, headers=bearer(submitter))
        assert response.status_code == 403, (method, path, response.text)
    assert await stored(api) == 1
