"""The job types every worker ships (DESIGN §11): noop, echo, sleep, fail, http."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services.worker.registry import JobContext, handler
from shared.errors import PermanentError, RetryableError

MAX_HTTP_BODY = 64 * 1024
DEFAULT_HTTP_TIMEOUT_MS = 30_000
# A sleep reports progress at most this often, so long sleeps stay cheap on Kafka.
SLEEP_MIN_STEP_MS = 500
SLEEP_MAX_STEPS = 10
RETRYABLE_STATUS = frozenset({408, 429})


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, error_type="invalid_payload")


def _int_field(payload: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = payload.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _invalid(f"{name} must be a non-negative number")
    return int(value)


@handler("noop")
async def noop(ctx: JobContext) -> dict[str, Any]:
    """Succeed at once."""
    return {}


@handler("echo")
async def echo(ctx: JobContext) -> dict[str, Any]:
    """Succeed with the payload as the result."""
    return ctx.payload


@handler("sleep")
async def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleep `ms` milliseconds in steps, reporting progress after each but the last."""
    ms = _int_field(ctx.payload, "ms", 0) or 0
    steps = max(1, min(SLEEP_MAX_STEPS, ms // SLEEP_MIN_STEP_MS))
    start = time.monotonic()
    for step in range(1, steps + 1):
        # Sleep to the step's deadline rather than a fixed slice, so the total stays `ms`.
        remaining = start + ms * step / steps / 1000 - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        if step < steps:
            slept = ms * step // steps
            await ctx.progress(slept, ms, stage="sleeping", message=f"slept {slept} of {ms} ms")
    return {"sleptMs": ms}


@handler("fail")
async def fail(ctx: JobContext) -> dict[str, Any]:
    """Fail on purpose: transient on the first `failTimes` attempts (all if absent), or permanent."""
    mode = ctx.payload.get("mode", "transient")
    message = str(ctx.payload.get("message") or f"{mode} failure requested")
    if mode == "permanent":
        raise PermanentError(message)
    if mode != "transient":
        raise _invalid("mode must be 'transient' or 'permanent'")
    fail_times = _int_field(ctx.payload, "failTimes")
    if fail_times is None or ctx.attempt <= fail_times:
        raise RetryableError(message)
    return {"failedTimes": fail_times, "attempt": ctx.attempt}


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None if absent or junk."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def decode_body(raw: bytes, truncated: bool, content_type: str) -> Any:
    """JSON when the server says so and the body is whole; text otherwise."""
    if not truncated and "json" in content_type.lower():
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", errors="replace")


def _request_args(payload: dict[str, Any]) -> dict[str, Any]:
    url = payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _invalid("url must be an http(s) URL")
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict):
        raise _invalid("headers must be an object")
    body = payload.get("body")
    method = payload.get("method") or ("POST" if body is not None else "GET")
    if not isinstance(method, str):
        raise _invalid("method must be a string")
    args: dict[str, Any] = {
        "method": method.upper(), "url": url, "headers": {str(k): str(v) for k, v in headers.items()},
    }
    if isinstance(body, str):
        args["content"] = body.encode()
    elif body is not None:
        args["json"] = body
    timeout_ms = _int_field(payload, "timeoutMs", DEFAULT_HTTP_TIMEOUT_MS) or DEFAULT_HTTP_TIMEOUT_MS
    args["timeout"] = timeout_ms / 1000
    return args


async def _read_limited(response: httpx.Response) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_HTTP_BODY:
            return b"".join(chunks)[:MAX_HTTP_BODY], True
    return b"".join(chunks), False


@handler("http")
async def http(ctx: JobContext) -> dict[str, Any]:
    """Call a URL: 2xx succeeds; 408, 429, 5xx, timeouts and connection errors retry; other 4xx fail."""
    args = _request_args(ctx.payload)
    try:
        async with ctx.http.stream(**args) as response:
            raw, truncated = await _read_limited(response)
    except httpx.TooManyRedirects as exc:
        raise PermanentError(f"http redirect loop: {exc!r}", error_type="http_redirects") from exc
    except httpx.TimeoutException as exc:
        raise RetryableError(f"http request timed out: {exc!r}", error_type="http_timeout") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"http connection failed: {exc!r}", error_type="http_connection") from exc
    status = response.status_code
    body = decode_body(raw, truncated, response.headers.get("content-type", ""))
    if 200 <= status < 300:
        return {"status": status, "body": body, "truncated": truncated}
    summary = f"HTTP {status} from {args['url']}"
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryableError(
            summary, retry_after=retry_after_s(response.headers.get("retry-after")), error_type=f"http_{status}"
        )
    raise PermanentError(summary, error_type=f"http_{status}")
