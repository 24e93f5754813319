"""Every rejected submission answers a problem naming the field, and stores and emits nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.integration.api.conftest import Api

VALID = {"queue": "q", "jobType": "noop"}

# (body, status, field the problem must name)
CASES: list[tuple[Any, int, str]] = [
    ({**VALID, "priority": 11}, 422, "priority"),
    ({**VALID, "priority": -1}, 422, "priority"),
    ({**VALID, "priority": "urgent"}, 422, "priority"),
    ({**VALID, "priority": 5.5}, 422, "priority"),
    ({**VALID, "priority": 5.0}, 422, "priority"),
    ({**VALID, "priority": True}, 422, "priority"),
    ({**VALID, "priority": None}, 422, "priority"),
    ({**VALID, "payload": [1, 2]}, 422, "payload"),
    ({**VALID, "payload": "text"}, 422, "payload"),
    ({**VALID, "payload": 3}, 422, "payload"),
    ({**VALID, "queue": "Bad Queue"}, 422, "queue"),
    ({**VALID, "queue": ""}, 422, "queue"),
    ({**VALID, "queue": "a" * 65}, 422, "queue"),
    ({**VALID, "queue": 7}, 422, "queue"),
    ({"jobType": "noop"}, 422, "queue"),
    ({"queue": "q"}, 422, "jobType"),
    ({**VALID, "jobType": "-starts-with-dash"}, 422, "jobType"),
    ({**VALID, "maxAttempts": 0}, 422, "maxAttempts"),
    ({**VALID, "maxAttempts": 101}, 422, "maxAttempts"),
    ({**VALID, "maxAttempts": "3"}, 422, "maxAttempts"),
    ({**VALID, "timeoutMs": 0}, 422, "timeoutMs"),
    ({**VALID, "retry": {"strategy": "sometimes"}}, 422, "retry.strategy"),
    ({**VALID, "retry": {"baseDelayMs": -1}}, 422, "retry.baseDelayMs"),
    ({**VALID, "scheduledFor": "tomorrow"}, 422, "scheduledFor"),
    ({**VALID, "scheduledFor": "2030-01-01T00:00:00Z", "delayMs": 10}, 422, "delayMs"),
    ({**VALID, "delayMs": -5}, 422, "delayMs"),
    ({**VALID, "dependsOn": ["not-a-uuid"]}, 422, "dependsOn[0]"),
    ({**VALID, "tags": "one"}, 422, "tags"),
    ({**VALID, "tags": ["x" * 65]}, 422, "tags[0]"),
    ({**VALID, "callbackUrl": "ftp://example.com/x"}, 422, "callbackUrl"),
    ({**VALID, "callbackUrl": "not a url"}, 422, "callbackUrl"),
    ({**VALID, "payload": {"s": "nul\u0000byte"}}, 422, "payload"),
    ({**VALID, "payload": {"big": 2**70}}, 422, "payload"),
    ({**VALID, "prority": 3}, 422, "prority"),
    ({**VALID, "rateLimitKey": "k" * 129}, 422, "rateLimitKey"),
    ({**VALID, "rateLimitKey": 7}, 422, "rateLimitKey"),
    ({**VALID, "concurrencyKey": "line\nbreak"}, 422, "concurrencyKey"),
    ({**VALID, "fairnessKey": ""}, 422, "fairnessKey"),
    ({**VALID, "maxAttempts": 2.5}, 422, "maxAttempts"),
    ([VALID], 422, "body"),
]


@pytest.fixture
async def nothing_stored(api: Api) -> AsyncIterator[Api]:
    """After the test: no job, no outbox row, and nothing the relay could publish."""
    yield api
    assert await api.count("jobs") == 0
    assert await api.count("outbox") == 0
    assert api.relay.held == 0
    assert await api.relay.drain_once(older_than_s=0) == 0


@pytest.mark.parametrize(("body", "status", "field"), CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
async def test_invalid_field_is_a_problem_naming_it(nothing_stored: Api, body: Any, status: int, field: str) -> None:
    # stdlib json: orjson refuses the 70-bit integer this test sends on purpose.
    response = await nothing_stored.client.post("/api/v1/jobs", content=json.dumps(body),
                                                headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:conveyor:problem:")
    assert problem["title"] and problem["detail"]
    assert field in [e["field"] for e in problem["errors"]], problem
    assert all(e["message"] for e in problem["errors"])


@pytest.mark.parametrize("raw", [b"{", b"{'queue': 'q'}", b"not json", b'{"queue": "q",}', b"   "])
async def test_malformed_json_is_400(nothing_stored: Api, raw: bytes) -> None:
    response = await nothing_stored.client.post("/api/v1/jobs", content=raw,
                                                headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400


async def test_non_json_content_type_is_415(nothing_stored: Api) -> None:
    response = await nothing_stored.client.post("/api/v1/jobs", content=b"queue=q",
                                                headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


async def test_payload_over_256_kib_is_413_naming_payload(nothing_stored: Api) -> None:
    payload = {"blob": "x" * (256 * 1024)}
    response = await nothing_stored.client.post("/api/v1/jobs", json={**VALID, "payload": payload})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["payload"]


async def test_payload_just_under_the_limit_is_accepted(api: Api) -> None:
    blob = "x" * (256 * 1024 - len(b'{"blob":""}'))
    response = await api.client.post("/api/v1/jobs", json={**VALID, "payload": {"blob": blob}})
    assert response.status_code == 201, response.text


async def test_body_over_1_mib_is_413_before_reading(nothing_stored: Api) -> None:
    body = orjson.dumps({**VALID, "payload": {"blob": "x" * (1024 * 1024)}})
    response = await nothing_stored.client.post("/api/v1/jobs", content=body,
                                                headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413


async def test_chunked_body_over_1_mib_is_413(nothing_stored: Api) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"queue": "q", "jobType": "noop", "payload": {"blob": "'
        for _ in range(64):  # 4 MiB if it were read to the end
            sent += 1
            yield b"x" * 65536
        yield b'"}}'

    response = await nothing_stored.client.post("/api/v1/jobs", content=chunks(),
                                                headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert sent < 64  # the read stopped once the limit was passed


async def test_conflicting_idempotency_keys_are_422(nothing_stored: Api) -> None:
    response = await nothing_stored.client.post(
        "/api/v1/jobs", json={**VALID, "idempotencyKey": "a"}, headers={"Idempotency-Key": "b"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "idempotencyKey"


async def test_a_problem_lists_every_bad_field(nothing_stored: Api) -> None:
    response = await nothing_stored.client.post(
        "/api/v1/jobs", json={"queue": "Q!", "jobType": "noop", "priority": 99, "payload": []}
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"queue", "priority", "payload"}
