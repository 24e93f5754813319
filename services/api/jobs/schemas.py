"""Request and response models of the REST API (camelCase on the wire, snake_case accepted in)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from typing_extensions import TypeAliasType

from shared.models import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, PRIORITY_WORDS, CamelModel, JobStatus, RetryPolicy

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Postgres text cannot hold U+0000, and control characters in labels are always a mistake.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
# An absolute http(s) URL with an ASCII host (IDN hosts in punycode), optional user info and port: exactly
# what _http_url accepts, so the document's pattern is the rule (a generated client can check it too).
# Explicit ASCII classes: `\s` and case folding differ between regex engines (ECMA, Rust, Python).
HTTP_URL = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~!$&'()*+,;=:%-]+@)?[A-Za-z0-9._~-]+(:[0-9]{1,5})?"
    r"([/?#][^\x00-\x1f\x7f]*)?$"
)
# A date and time starts with its date: pydantic alone would also take "123" as a Unix time, which
# `format: date-time` does not promise.
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
MAX_BATCH_JOBS = 5000
MAX_TAGS = 32
MAX_DEPENDENCIES = 1000
INT32_MAX = 2**31 - 1
# The numbers are listed rather than given as a range: a range would also admit 5.0 (JSON Schema's
# `integer` is any number without a fraction), which a priority refuses.
PRIORITY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "enum": list(range(11))},
        {"type": "string", "enum": list(PRIORITY_WORDS)},
    ],
    "description": "0-10, higher first; or high (8), normal (5), low (2)",
    "default": DEFAULT_PRIORITY,
}
# scheduledFor and delayMs exclude each other (both null or absent is fine).
ONE_SCHEDULE: dict[str, Any] = {
    "not": {
        "required": ["scheduledFor", "delayMs"],
        "properties": {"scheduledFor": {"not": {"type": "null"}}, "delayMs": {"not": {"type": "null"}}},
    },
}


def _priority(value: Any) -> int:
    # bool is an int subclass and floats coerce silently: both are client mistakes, so refuse them.
    if isinstance(value, str):
        if value in PRIORITY_WORDS:
            return PRIORITY_WORDS[value]
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    if type(value) is not int or not 0 <= value <= 10:
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    return value


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 70.0 is the integer 70 (so says JSON Schema's `integer`). Booleans and
    # numbers in strings are not integers; anything else is left to the int validation to refuse.
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


def _date_time(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and DATE_TIME.match(value)):
        return value
    raise ValueError("must be a date and time, such as 2030-01-01T12:00:00Z")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


def _as_is(value: Any) -> Any:
    return value


# What a payload may hold as the API stores it (jsonb, and orjson for events): any JSON but U+0000 in
# strings and keys (Postgres refuses it) and integers beyond 64 bits (orjson refuses them). job_plan
# checks that on the serialized payload; these types only say it in the OpenAPI document. The integer
# limit is said in words: JSON Schema cannot tell the integer 2**70 (refused) from the float 1.2e21
# (stored), both being the number 1180591620717411303424 to it.
NO_NUL = r"^[^\x00]*$"
JsonKey = Annotated[str, Field(pattern=NO_NUL)]
# A key outside the pattern (holding U+0000) is refused, not just left unchecked.
_CLOSED = Field(json_schema_extra={"additionalProperties": False})
# mypy cannot follow a recursive TypeAliasType (hence Any and the ignores); it serves only the JSON schema.
JsonValue: Any = TypeAliasType(
    "JsonValue",
    Annotated[
        Union[  # noqa: UP007 (a string forward reference cannot be an operand of |)
            bool,
            float,
            Annotated[str, Field(pattern=NO_NUL)],
            list["JsonValue"],  # type: ignore[misc]
            Annotated[dict[JsonKey, "JsonValue"], _CLOSED],  # type: ignore[misc]
            None,
        ],
        Field(description="Any JSON value; an integer must fit in 64 bits, a string may not hold U+0000"),
    ],
)
Payload = Annotated[
    dict[str, Any], BeforeValidator(_as_is, json_schema_input_type=Annotated[dict[JsonKey, JsonValue], _CLOSED])
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Priority = Annotated[int, BeforeValidator(_priority), WithJsonSchema(PRIORITY_SCHEMA)]
DateTime = Annotated[datetime, BeforeValidator(_date_time)]
# Integers with their bounds (an integral float such as 70.0 is taken as 70).
MaxAttempts = Annotated[int, Field(ge=1, le=100), BeforeValidator(_whole_number)]
TimeoutMs = Annotated[int, Field(ge=1, le=INT32_MAX), BeforeValidator(_whole_number)]
DelayMs = Annotated[int, Field(ge=0, le=366 * 86_400_000), BeforeValidator(_whole_number)]
BaseDelayMs = Annotated[int, Field(ge=0, le=86_400_000), BeforeValidator(_whole_number)]
MaxDelayMs = Annotated[int, Field(ge=0, le=7 * 86_400_000), BeforeValidator(_whole_number)]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]
CallbackUrl = Annotated[str, Field(max_length=2048, pattern=HTTP_URL), AfterValidator(_http_url)]
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE)]


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
    max_attempts: MaxAttempts = DEFAULT_MAX_ATTEMPTS
    retry: RetrySubmission = Field(default_factory=RetrySubmission)
    timeout_ms: TimeoutMs | None = None
    scheduled_for: DateTime | None = Field(
        default=None, description="When to run it (RFC 3339; without an offset, UTC); not with delayMs"
    )
    delay_ms: DelayMs | None = Field(default=None, description="Not with scheduledFor")
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
