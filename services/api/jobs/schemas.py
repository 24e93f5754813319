"""Request and response models of the REST API (camelCase on the wire, snake_case accepted in)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, ValidationInfo, field_validator

from services.api.jobs.field_types import (
    BaseDelayMs,
    CallbackUrl,
    DateTime,
    DelayMs,
    IdempotencyKey,
    Label,
    MaxAttempts,
    MaxDelayMs,
    Name,
    Payload,
    Priority,
    Tag,
    TimeoutMs,
)
from shared.models import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, CamelModel, JobStatus, RetryPolicy

MAX_BATCH_JOBS = 5000
MAX_TAGS = 32
MAX_DEPENDENCIES = 1000

# scheduledFor and delayMs exclude each other (both null or absent is fine).
ONE_SCHEDULE: dict[str, Any] = {
    "not": {
        "required": ["scheduledFor", "delayMs"],
        "properties": {"scheduledFor": {"not": {"type": "null"}}, "delayMs": {"not": {"type": "null"}}},
    },
}


class RetrySubmission(RetryPolicy):
    """`retry` as submitted: RetryPolicy's fields and bounds, as strict as their JSON types."""

    base_delay_ms: BaseDelayMs = 1000
    max_delay_ms: MaxDelayMs = 300_000
    factor: StrictFloat = Field(default=2.0, ge=1.0, le=100.0)
    jitter: StrictBool = True


class JobFields(CamelModel):
    """The fields a job submission shares with a job of a batch."""

    model_config = ConfigDict(json_schema_extra=ONE_SCHEDULE)

    queue: Name
    job_type: Name
    payload: Payload = Field(default_factory=dict, description="A JSON object of at most 256 KiB of JSON text")
    priority: Priority = DEFAULT_PRIORITY
    max_attempts: MaxAttempts | None = Field(
        default=None, description=f"Default: the queue's `maxAttempts` (PUT /queues), else {DEFAULT_MAX_ATTEMPTS}",
    )
    retry: RetrySubmission | None = Field(
        default=None, description="Default: the job type's policy (a worker setting), else the queue's, else "
                                  "exponential from 1 s",
    )
    timeout_ms: TimeoutMs | None = None
    scheduled_for: DateTime | None = Field(
        default=None, description="When to run it (RFC 3339; without an offset, UTC); not with delayMs"
    )
    delay_ms: DelayMs | None = Field(default=None, description="Not with scheduledFor")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    callback_url: CallbackUrl | None = None
    idempotency_key: IdempotencyKey | None = None
    rate_limit_key: Label | None = Field(default=None, description="Puts the job under its queue's `keyRateLimit`")
    concurrency_key: Label | None = Field(
        default=None, description="Puts the job under its queue's `keyConcurrency`",
    )
    fairness_key: Label | None = Field(
        default=None, description="Within a priority, keys take turns (weights: the queue's `fairnessWeights`)",
    )

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
    callback_url: CallbackUrl | None = Field(
        default=None, description="Called with the batch_completed event once every job of the batch is terminal"
    )


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


class LateResult(CamelModel):
    """A result that arrived after its attempt had ended otherwise (its worker lost the lease): never applied.

    `outcome`: what the late worker reported (completed, retry, failed, cancelled, or abandoned: its
    handler was stopped when it found the lease gone); `reason`: lease_lost (the worker knew) or
    attempt_already_ended (the scheduler saw it arrive after the attempt was recorded as ended).
    """

    outcome: Literal["completed", "retry", "failed", "cancelled", "abandoned"]
    at: datetime
    worker_id: str | None
    rejected: bool
    reason: Literal["lease_lost", "attempt_already_ended"]
    error: ErrorView | None = None


class AttemptView(CamelModel):
    """One row of `attemptHistory`."""

    attempt: int
    status: str
    worker_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    error: ErrorView | None
    late_result: LateResult | None = None


class LogLine(CamelModel):
    """One line a handler logged with `ctx.log(message)`."""

    at: datetime
    attempt: int
    message: str


WaitingCode = Literal[
    "paused", "dependencies", "scheduled", "backoff", "concurrency_limited", "rate_limited", "queued", "pending",
]


class WaitingReasonView(CamelModel):
    """Why a waiting job has not started (DESIGN §5); where several apply, the first in the order of `code`."""

    code: WaitingCode
    message: str = Field(description="The reason in words")
    waiting_on: list[uuid.UUID] | None = Field(default=None, description="dependencies: the unfinished ones")
    until: datetime | None = Field(default=None, description="scheduled, backoff, rate_limited: when it may start")
    attempt: int | None = Field(default=None, description="backoff: the attempt that starts after it")
    key: str | None = Field(default=None, description="concurrency_limited, rate_limited: the job's key, or null "
                                                      "for the queue's own limit")
    running: int | None = Field(default=None, description="concurrency_limited: jobs running under the limit")
    limit: int | None = Field(default=None, description="concurrency_limited: the limit")
    ahead: int | None = Field(default=None, description="queued: jobs before it in dispatch order (approximate; "
                                                        "null when unknown)")


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
    retry: RetryPolicy | None = Field(description="The job's own policy; null: its type's or queue's default applies")
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
    logs: list[LogLine] = Field(description="The handler's last 200 log lines (`ctx.log`), oldest first.")
    checkpoint: Any = Field(description="The handler's last checkpoint (`ctx.checkpoint`, JSON), null if none.")
    rate_limit_key: str | None
    concurrency_key: str | None
    fairness_key: str | None
    waiting_reason: WaitingReasonView | None = Field(description="null while running and once terminal")


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
    """GET /job-batches/{id}: `completed` (with `completedAt`) once every job of the batch is terminal."""

    batch_id: uuid.UUID
    counts: BatchCounts
    status: Literal["running", "completed"]
    completed_at: datetime | None


# ---- the dead-letter queue ----

MAX_DLQ_ACTION = 10_000

# Exactly one of `ids` and `filter`, each non-null when given (pydantic's check is in the route, which names
# the field; this says the same in the document).
EXACTLY_ONE_SELECTION: dict[str, Any] = {
    "oneOf": [
        {"required": ["ids"], "properties": {"ids": {"not": {"type": "null"}}}},
        {"required": ["filter"], "properties": {"filter": {"not": {"type": "null"}}}},
    ],
}


class DeadLetterFilterFields(CamelModel):
    """Which failed jobs: every given field must match; an empty filter matches every failed job of the tenant."""

    queue: Name | None = None
    job_type: Name | None = None
    error_type: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")] | None = None
    failed_after: DateTime | None = Field(default=None, description="RFC 3339; without an offset, UTC")
    failed_before: DateTime | None = Field(default=None, description="RFC 3339; without an offset, UTC")


class DeadLetterSelection(CamelModel):
    """POST /dlq/retry and /dlq/delete: `{ids: [...]}` or `{filter: {...}}`, exactly one of the two."""

    model_config = ConfigDict(json_schema_extra=EXACTLY_ONE_SELECTION)

    ids: list[uuid.UUID] | None = Field(
        default=None, max_length=MAX_DLQ_ACTION,
        description="Job ids; those that are not failed jobs of the caller's tenant are skipped",
    )
    filter: DeadLetterFilterFields | None = None


class DeadLetterRetried(CamelModel):
    """POST /dlq/retry: the jobs moved back to pending."""

    retried: int
    job_ids: list[uuid.UUID]


class DeadLetterDeleted(CamelModel):
    """POST /dlq/delete: how many failed jobs were deleted."""

    deleted: int


class DeliveryTry(CamelModel):
    """One try of a webhook delivery."""

    at: datetime
    status: int | None = Field(description="The receiver's HTTP status; null when it did not answer in time")
    error: str | None = Field(default=None, description="Why the try failed (absent after a 2xx)")
    duration_ms: int


class DeliveryView(CamelModel):
    """A webhook delivery of the job's callbackUrl; `deliveryId` is its `Conveyor-Delivery` header."""

    delivery_id: uuid.UUID
    event: str = Field(description="The event type sent (`completed`, `failed`, `cancelled`)")
    url: str
    attempts: list[DeliveryTry] = Field(description="Every try, oldest first")
    state: Literal["pending", "delivered", "failed"]


class DeliveryList(CamelModel):
    """GET /jobs/{id}/deliveries: the job's webhook deliveries, oldest first."""

    items: list[DeliveryView]
