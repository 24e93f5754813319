"""From a validated submission to the job row to insert (normalized values, payload checks, fingerprint)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.api.http.problems import FieldError, PayloadTooLarge, ValidationFailed
from services.api.jobs.schemas import JobFields
from shared.ids import new_id
from shared.models import DEFAULT_MAX_ATTEMPTS, RetryPolicy

# Postgres text and jsonb cannot hold U+0000; orjson writes it as the escape \u0000 (after an even
# number of backslashes, which would be escaped backslashes followed by plain text).
_NUL_ESCAPE = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u0000")


@dataclass(frozen=True)
class NewJob:
    """One job ready for INSERT: values already normalized and serialized."""

    id: uuid.UUID
    queue: str
    job_type: str
    priority: int
    payload: dict[str, Any]
    payload_json: str
    max_attempts: int
    retry: RetryPolicy | None  # None: the job gave none (the worker resolves the default)
    timeout_ms: int | None
    scheduled_for: datetime | None
    depends_on: list[uuid.UUID]
    tags: list[str]
    callback_url: str | None
    idempotency_key: str | None
    request_hash: str | None
    rate_limit_key: str | None = None
    concurrency_key: str | None = None
    fairness_key: str | None = None

    @property
    def retry_json(self) -> str | None:
        """The retry policy as stored (camelCase JSON), None when the job gave none."""
        return None if self.retry is None else self.retry.model_dump_json(by_alias=True)


def request_hash(fields: JobFields, depends_on: list[uuid.UUID]) -> str:
    """Fingerprint of what was asked (defaults applied, key excluded): same key + same hash = replay."""
    doc = fields.model_dump(mode="json", exclude={"idempotency_key", "depends_on", "ref"})
    # Left out is the same request as the default spelled out; the queue's default is not part of it
    # (a replay stays a replay when the queue's config changed in between).
    doc["max_attempts"] = fields.max_attempts or DEFAULT_MAX_ATTEMPTS
    doc["depends_on"] = [str(d) for d in depends_on]
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _serialize_payload(payload: dict[str, Any], field: str, limit: int) -> str:
    try:
        raw = orjson.dumps(payload)
    except TypeError as exc:  # orjson.JSONEncodeError: integers beyond 64 bits
        raise ValidationFailed("the payload cannot be stored", errors=[FieldError(field, str(exc))]) from exc
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"{field} is {len(raw)} bytes of JSON; the limit is {limit}",
            errors=[FieldError(field, f"must be at most {limit} bytes of JSON")],
        )
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise ValidationFailed(
            "the payload cannot be stored", errors=[FieldError(field, "strings may not contain U+0000")]
        )
    return raw.decode()


def _run_at(fields: JobFields, now: datetime) -> datetime | None:
    if fields.scheduled_for is not None:
        when = fields.scheduled_for
        # A time without an offset is taken as UTC: every timestamp in Conveyor is UTC.
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if fields.delay_ms:
        return now + timedelta(milliseconds=fields.delay_ms)
    return None


def plan_job(
    fields: JobFields,
    depends_on: list[uuid.UUID],
    *,
    now: datetime,
    max_payload_bytes: int,
    idempotency_key: str | None = None,
    prefix: str = "",
    job_id: uuid.UUID | None = None,
    default_max_attempts: int | None = None,
) -> NewJob:
    """Normalize one job; `prefix` names its place in a batch (`jobs[3].`) for error messages.

    `default_max_attempts`: the queue's, for a job that gives none.
    """
    key = idempotency_key or fields.idempotency_key
    return NewJob(
        id=job_id or new_id(),
        queue=fields.queue,
        job_type=fields.job_type,
        priority=fields.priority,
        payload=fields.payload,
        payload_json=_serialize_payload(fields.payload, f"{prefix}payload", max_payload_bytes),
        max_attempts=fields.max_attempts or default_max_attempts or DEFAULT_MAX_ATTEMPTS,
        retry=fields.retry,
        timeout_ms=fields.timeout_ms,
        scheduled_for=_run_at(fields, now),
        depends_on=depends_on,
        tags=fields.tags,
        callback_url=fields.callback_url,
        idempotency_key=key,
        request_hash=request_hash(fields, depends_on) if key else None,
        rate_limit_key=fields.rate_limit_key,
        concurrency_key=fields.concurrency_key,
        fairness_key=fields.fairness_key,
    )
