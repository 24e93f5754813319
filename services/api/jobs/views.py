"""Rows as the camelCase documents the API answers with."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from shared.models import JobStatus


def attempt_view(row: asyncpg.Record) -> dict[str, Any]:
    """One record of `attemptHistory`."""
    return {
        "attempt": row["attempt"],
        "status": row["status"],
        "workerId": row["worker_id"],
        "startedAt": row["started_at"],
        "endedAt": row["ended_at"],
        "error": row["error"],
        "lateResult": row.get("late_result"),
    }


def job_view(
    row: asyncpg.Record, attempts: Sequence[asyncpg.Record], waiting_reason: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """GET /jobs/{id}: the job with its attempt history; `error` is the last failed attempt's."""
    history = [attempt_view(a) for a in attempts]
    error = row["error"]
    if error is None and row["status"] in (JobStatus.FAILED, JobStatus.RETRYING):
        error = next((a["error"] for a in reversed(history) if a["error"] is not None), None)
    return {
        "jobId": row["id"],
        "queue": row["queue"],
        "jobType": row["job_type"],
        "status": row["status"],
        "priority": row["priority"],
        "payload": row["payload"],
        "maxAttempts": row["max_attempts"],
        "attempts": row["attempts"],
        "attemptHistory": history,
        "retry": row["retry"],
        "timeoutMs": row["timeout_ms"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "scheduledFor": row["scheduled_for"],
        "startedAt": row["started_at"],
        "completedAt": row["completed_at"],
        "result": row["result"],
        "error": error,
        "progress": row["progress"],
        "tags": row["tags"],
        "dependsOn": row["depends_on"],
        "batchId": row["batch_id"],
        "callbackUrl": row["callback_url"],
        "idempotencyKey": row["idempotency_key"],
        "cancelReason": row["cancel_reason"],
        "cancelRequested": row["cancel_requested"],
        "logs": row["logs"],
        "checkpoint": row["checkpoint"],
        "rateLimitKey": row["rate_limit_key"],
        "concurrencyKey": row["concurrency_key"],
        "fairnessKey": row["fairness_key"],
        "waitingReason": waiting_reason,
    }


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """Opaque keyset position: base64url of `[createdAt, id]`."""
    raw = orjson.dumps([created_at.isoformat(), str(job_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_cursor; raises ValueError for anything it did not produce."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = orjson.loads(raw)
        when = datetime.fromisoformat(created)
        position = uuid.UUID(job_id)
    except (TypeError, ValueError, AttributeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ValueError("not a cursor this API returned") from exc
    if when.tzinfo is None:
        raise ValueError("not a cursor this API returned")
    return when, position


# The DLQ's keyset position in plain text, `<microseconds since 1970>.<job id as 32 hex digits>`: every string
# of this pattern is a valid position, so the document's pattern is the whole rule.
FAILURE_CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9a-f]{32}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_failure_cursor(failed_at: datetime, job_id: uuid.UUID) -> str:
    """Keyset position of a DLQ page (Postgres times are whole microseconds, so it is exact)."""
    return f"{(failed_at - _EPOCH) // timedelta(microseconds=1)}.{job_id.hex}"


def decode_failure_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_failure_cursor, for a string of FAILURE_CURSOR_PATTERN."""
    micros, job_id = cursor.split(".", 1)
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=job_id)
