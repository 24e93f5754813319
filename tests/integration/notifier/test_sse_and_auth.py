"""Server-Sent Events, handshake authentication and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus

from services.notifier.service import NotifierService
from shared.auth.keys import create_api_key
from shared.auth.principal import Scope
from shared.events import EventType
from shared.kafka.producer import EventProducer
from tests.fixtures.polling import eventually
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import assert_quiet, client, http_url, job_event, recv, request


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The `data:` payloads of an SSE response, parsed (comments skipped)."""
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield dict(orjson.loads(line[len("data: "):]))


async def test_sse_stream_receives_job_events(notifier: NotifierService, producer: EventProducer) -> None:
    job, other = uuid.uuid4(), uuid.uuid4()
    async with (
        httpx.AsyncClient(base_url=http_url(notifier), timeout=httpx.Timeout(10, read=15)) as http,
        http.stream("GET", "/sse", params={"jobId": str(job)}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(response)
        assert await anext(messages) == {"type": "subscribed", "jobId": str(job)}
        done = job_event(EventType.COMPLETED, job, result={"n": 1}, durationMs=3)
        await producer.publish_events([job_event(EventType.COMPLETED, other), done])
        message = await asyncio.wait_for(anext(messages), 15)
        assert message == {
            "type": "job_completed", "jobId": str(job), "queue": "emails", "jobType": "send",
            "status": "completed", "attempt": 1, "eventId": str(done.event_id),
            "occurredAt": done.occurred_at.isoformat(), "data": {"result": {"n": 1}, "durationMs": 3},
        }
    # The stream's subscriber is gone once the client hangs up.
    await eventually(lambda: len(notifier.hub) == 0)


async def test_sse_rejects_bad_filters(notifier: NotifierService) -> None:
    async with httpx.AsyncClient(base_url=http_url(notifier), timeout=10) as http:
        for params in ({}, {"jobId": "nope"}, {"queue": "Bad Name"}):
            response = await http.get("/sse", params=params)
            assert response.status_code == 400, params
            assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def keys(db_pool: asyncpg.Pool) -> dict[str, str]:
    """API keys of this test's database, by what they may do."""
    return {
        "default": await create_api_key(db_pool, "default", frozenset({Scope.READ}), "reader"),
        "other": await create_api_key(db_pool, "other", frozenset({Scope.ADMIN}), "other-admin"),
        "submit-only": await create_api_key(db_pool, "default", frozenset({Scope.SUBMIT}), "submitter"),
    }


async def test_tenants_only_see_their_own_events(
    start_notifier: NotifierFactory, producer: EventProducer, keys: dict[str, str]
) -> None:
    async with start_notifier() as notifier:  # auth required: the default
        assert notifier._settings.auth_required
        headers = {"Authorization": f"Bearer {keys['default']}"}
        async with client(notifier, additional_headers=headers) as mine, \
                client(notifier, f"?token={keys['other']}") as theirs:
            job = uuid.uuid4()
            for ws in (mine, theirs):
                assert await request(ws, {"type": "subscribe", "all": True}) == {"type": "subscribed", "all": True}
                assert await request(ws, {"type": "subscribe", "jobId": str(job)}) == {
                    "type": "subscribed", "jobId": str(job)}
            ours = job_event(EventType.STARTED, uuid.uuid4())
            foreign = job_event(EventType.STARTED, job, tenant="other")  # even the same job id subscription
            await producer.publish_events([foreign, ours])
            assert (await recv(mine))["eventId"] == str(ours.event_id)
            assert (await recv(theirs))["eventId"] == str(foreign.event_id)
            await assert_quiet(mine)
            await assert_quiet(theirs, 0.2)

        async with httpx.AsyncClient(base_url=http_url(notifier), timeout=10) as http:
            response = await http.get("/sse", params={"all": "true"})
            assert response.status_code == 401
            response = await http.get("/sse", params={"all": "true", "token": keys["submit-only"]})
            assert response.status_code == 403


async def test_handshakes_without_a_valid_key_are_refused(
    start_notifier: NotifierFactory, keys: dict[str, str]
) -> None:
    async with start_notifier() as notifier:  # auth required: the default
        assert notifier._settings.auth_required
        for query, headers, status in (
            ("", {}, 401),
            ("?token=cvk_wrong", {}, 401),
            ("", {"Authorization": "Basic abc"}, 401),
            (f"?token={keys['submit-only']}", {}, 403),
        ):
            with pytest.raises(InvalidStatus) as info:
                async with client(notifier, query, additional_headers=headers):
                    pass
            assert info.value.response.status_code == status, (query, headers)
            assert orjson.loads(info.value.response.body)["status"] == status
        assert len(notifier.hub) == 0


async def test_without_auth_required_an_anonymous_client_is_the_default_tenant(
    start_notifier: NotifierFactory, producer: EventProducer
) -> None:
    async with start_notifier(auth_required=False) as notifier, client(notifier) as ws:
        await request(ws, {"type": "subscribe", "all": True})
        ours = job_event(EventType.SUBMITTED, uuid.uuid4(), attempt=0)
        await producer.publish_events([job_event(EventType.SUBMITTED, uuid.uuid4(), tenant="other"), ours])
        assert (await recv(ws))["eventId"] == str(ours.event_id)
        await assert_quiet(ws)
