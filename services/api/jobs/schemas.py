"""Request and response models of the REST API (camelCase on the wire, snake_case accepted in)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, ValidationInfo, field_validator

from shared.models import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, PRIORITY_WORDS, CamelModel, JobStatus, RetryPolicy

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Postgres text cannot hold U+0000, and control characters in labels are always a mistake.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
MAX_BATCH_JOBS = 5000
MAX_TAGS = 32
MAX_DEPENDENCIES = 1000
INT32_MAX = 2**31 - 1


def _priority(value: Any) -> int:
    # bool is an int subclass and floats coerce silently: both are client mistakes, so refuse them.
    if isinstance(value, str):
        if value in PRIORITY_WORDS:
            return PRIORITY_WORDS[value]
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    if type(value) is not int or not 0 <= value <= 10:
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Priority = Annotated[int, BeforeValidator(_priority), Field(json_schema_extra={"examples": [5, "high"]})]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]
CallbackUrl = Annotated[str, Field(max_length=2048, pattern=PRINTABLE), AfterValidator(_http_url)]
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE)]


class JobFields(CamelModel):
    """The fields a job submission shares with a job of a batch."""

    queue: Name
    job_type: Name
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = DEFAULT_PRIORITY
    max_attempts: StrictInt = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_ms: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    scheduled_for: datetime | None = None
    delay_ms: StrictInt | None = Field(default=None, ge=0, le=366 * 86_400_000)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    callback_url: CallbackUrl | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255, pattern=PRINTABLE)

    @field_validator("delay_ms")
    @classmethod
    def _one_schedule(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("scheduled_for") is not None:
            raise ValueError("give scheduledFor or delayMs, not both")
        return value


class JobSubmission(JobFields):
    """POST /api/v1/jobs."""

    depends_on: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)


class BatchJob(JobFields):
    """One job of POST /api/v1/job-batches; `dependsOn` may name job ids or refs of the same batch."""

    ref: Label | None = None
    depends_on: list[Label] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES
    )


class BatchSubmission(CamelModel):
    """POST /api/v1/job-batches."""

    jobs: list[BatchJob] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


# ---- responses (documentation only: handlers render plain dicts with orjson) ----


class Submitted(CamelModel):
    """201 (or 200 for an idempotent replay) of POST /jobs."""

    job_id: uuid.UUID
    status: JobStatus


class CancelResult(CamelModel):
    """DELETE /jobs/{id}: cancelled at once (200) or the running worker was told (202)."""

    job_id: uuid.UUID
    status: JobStatus
    cancel_requested: bool | None = None


class ErrorView(CamelModel):
    """`{type, message, retryable}` of a failed attempt."""

    type: str
    message: str
    retryable: bool


class AttemptView(CamelModel):
    """One row of `attemptHistory`."""

    attempt: int
    status: str
    worker_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    error: ErrorView | None


class JobView(CamelModel):
    """GET /jobs/{id} and the items of GET /jobs."""

    job_id: uuid.UUID
    queue: str
    job_type: str
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    max_attempts: int
    attempts: int
    attempt_history: list[AttemptView]
    retry: RetryPolicy
    timeout_ms: int | None
    created_at: datetime
    updated_at: datetime
    scheduled_for: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    result: Any
    error: ErrorView | None
    progress: dict[str, Any] | None
    tags: list[str]
    depends_on: list[uuid.UUID]
    batch_id: uuid.UUID | None
    callback_url: str | None
    idempotency_key: str | None
    cancel_reason: str | None
    cancel_requested: bool


class JobPage(CamelModel):
    """GET /jobs: newest first; pass `nextCursor` back as `cursor` for the next page."""

    items: list[JobView]
    next_cursor: str | None


class EventList(CamelModel):
    """GET /jobs/{id}/events: envelopes of DESIGN §6, oldest first."""

    items: list[dict[str, Any]]


class BatchCreated(CamelModel):
    """201 of POST /job-batches: job ids in the order the jobs were given."""

    batch_id: uuid.UUID
    job_ids: list[uuid.UUID]


class BatchCounts(CamelModel):
    """Jobs of a batch by state (`pending` counts every waiting state)."""

    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class BatchView(CamelModel):
    """GET /job-batches/{id}."""

    batch_id: uuid.UUID
    counts: BatchCounts
