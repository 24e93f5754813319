"""The built-in job types, run through `invoke` as the executor runs them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from services.worker import builtin_handlers as b
from services.worker.attempt import invoke
from services.worker.context import JobContext
from services.worker.outcomes import Outcome
from services.worker.registry import default_registry
from tests.unit.worker.helpers import ProgressLog, make_ctx, make_spec


async def run(job_type: str, payload: dict[str, object], *, attempt: int = 1, timeout_ms: int = 5_000,
              http: httpx.AsyncClient | None = None, sink: ProgressLog | None = None) -> Outcome:
    fn = default_registry.get(job_type)
    assert fn is not None
    return await invoke(fn, make_ctx(make_spec(job_type, payload, attempt=attempt), http=http, sink=sink), timeout_ms)


async def test_noop_and_echo() -> None:
    assert (await run("noop", {"x": 1})).result == {}
    assert (await run("echo", {"x": [1, {"y": None}]})).result == {"x": [1, {"y": None}]}


async def test_sleep_sleeps_reports_progress_and_honours_timeouts() -> None:
    log = ProgressLog()
    began = time.monotonic()
    outcome = await run("sleep", {"ms": 1200}, sink=log)
    assert outcome.result == {"sleptMs": 1200}
    assert 1.15 <= time.monotonic() - began < 2
    await log.wait_for(1)  # progress goes out from a task of its own
    assert [round(p) for p, _ in log.reports] == [50]
    timed = await run("sleep", {"ms": 5000}, timeout_ms=100)
    assert timed.error is not None and timed.error.type == "timeout"
    bad = await run("sleep", {"ms": "soon"})
    assert bad.error is not None and (bad.error.type, bad.error.retryable) == ("invalid_payload", False)


@pytest.mark.parametrize(
    ("payload", "attempt", "expected"),
    [
        ({"mode": "transient", "failTimes": 2}, 1, ("transient", True)),
        ({"mode": "transient", "failTimes": 2}, 2, ("transient", True)),
        ({"mode": "transient", "failTimes": 2}, 3, None),
        ({"mode": "transient"}, 9, ("transient", True)),
        ({"mode": "permanent", "message": "nope"}, 1, ("permanent", False)),
        ({"mode": "sideways"}, 1, ("invalid_payload", False)),
    ],
)
async def test_fail(payload: dict[str, object], attempt: int, expected: tuple[str, bool] | None) -> None:
    outcome = await run("fail", payload, attempt=attempt)
    if expected is None:
        assert outcome.ok
    else:
        assert outcome.error is not None and (outcome.error.type, outcome.error.retryable) == expected
    if payload.get("message"):
        assert outcome.error is not None and outcome.error.message == "nope"


def test_retry_after_parsing() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert b.retry_after_s("7") == 7
    assert b.retry_after_s("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30
    assert b.retry_after_s("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0
    assert b.retry_after_s("whenever") is None and b.retry_after_s(None) is None and b.retry_after_s("inf") is None


def test_decode_body() -> None:
    assert b.decode_body(b'{"a": 1}', False, "application/json; charset=utf-8") == {"a": 1}
    assert b.decode_body(b'{"a": 1', True, "application/json") == '{"a": 1'
    assert b.decode_body(b"plain", False, "text/plain") == "plain"


def _client(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body, headers=headers or {})

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    client.seen = seen  # type: ignore[attr-defined]
    return client


async def test_http_status_mapping_and_request_shape() -> None:
    async with _client(201, b'{"ok": true}', {"content-type": "application/json"}) as client:
        ok = await run("http", {"url": "http://svc/x", "body": {"a": 1}, "headers": {"X-T": "1"}}, http=client)
        assert ok.result == {"status": 201, "body": {"ok": True}, "truncated": False}
        request = client.seen[0]  # type: ignore[attr-defined]
        assert request.method == "POST" and request.headers["x-t"] == "1" and request.content == b'{"a":1}'
    async with _client(503, b"busy", {"retry-after": "4"}) as client:
        busy = await run("http", {"url": "http://svc/x"}, http=client)
        assert busy.error is not None and (busy.error.type, busy.error.retryable) == ("http_503", True)
        assert busy.retry_after_s == 4
    for status in (408, 429):
        async with _client(status) as client:
            outcome = await run("http", {"url": "http://svc/x"}, http=client)
            assert outcome.error is not None and outcome.error.retryable
    async with _client(404) as client:
        missing = await run("http", {"url": "http://svc/x", "method": "get"}, http=client)
        assert missing.error is not None and (missing.error.type, missing.error.retryable) == ("http_404", False)
    bad = await run("http", {"url": "ftp://svc/x"})
    assert bad.error is not None and bad.error.type == "invalid_payload"


async def test_http_truncates_large_bodies() -> None:
    async with _client(200, b"x" * (b.MAX_HTTP_BODY * 2), {"content-type": "application/json"}) as client:
        outcome = await run("http", {"url": "http://svc/big"}, http=client)
    assert outcome.result["truncated"] is True and len(outcome.result["body"]) == b.MAX_HTTP_BODY


async def test_http_transport_errors_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for fn, kind in ((refuse, "http_connection"), (slow, "http_timeout")):
        async with httpx.AsyncClient(transport=httpx.MockTransport(fn)) as client:
            outcome = await run("http", {"url": "http://svc/x"}, http=client)
        assert outcome.error is not None and (outcome.error.type, outcome.error.retryable) == (kind, True)


async def test_invoke_maps_a_handler_timeout_error_to_its_own_type() -> None:
    async def raises_timeout(ctx: JobContext) -> None:
        raise TimeoutError("my own")

    outcome = await invoke(raises_timeout, make_ctx(make_spec()), 5_000)
    assert outcome.error is not None and outcome.error.type == "TimeoutError"
