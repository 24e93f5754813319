"""Schedules (DESIGN §5): request models, the job template's checks (those of POST /jobs) and the view."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, WithJsonSchema

from services.api.http.patches import null_only_for
from services.api.jobs.field_types import CallbackUrl, Label, MaxAttempts, Name, Payload, Priority, Tag, TimeoutMs
from services.api.jobs.job_plan import NewJob, plan_job
from services.api.jobs.schemas import MAX_TAGS, JobFields, RetrySubmission
from shared.cron import PREVIEW_COUNT, check_cron, fire_times, zone
from shared.models import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, CamelModel

MisfirePolicy = Literal["skip", "run_once"]
# The template fields that take null.
NULLABLE = {"timeoutMs", "callbackUrl", "maxAttempts", "retry", "rateLimitKey", "concurrencyKey", "fairnessKey"}

# The document is as strict as the check (test_openapi_contract): each field's numbers in range, steps
# above 0; croniter then refuses what a pattern cannot see (a reversed range, a day no month has).
_LIST = r"(?:\*|{n}(?:-{n})?)(?:/[1-9][0-9]?)?"
_FIELDS = [r"[1-5]?[0-9]", r"1?[0-9]|2[0-3]", r"[1-9]|[12][0-9]|3[01]", r"[1-9]|1[0-2]", r"[0-7]"]
CRON_PATTERN = r"^" + r" ".join(
    "{one}(?:,{one})*".format(one=_LIST.format(n=f"(?:{n})")) for n in _FIELDS
) + r"$"


def _zone(value: str) -> str:
    zone(value)  # its CronError is a ValueError: pydantic names the field
    return value


CronExpr = Annotated[
    str, Field(max_length=200, pattern=CRON_PATTERN, description="5-field cron, e.g. `*/5 * * * *`"),
    AfterValidator(check_cron),
]
ZoneName = Annotated[
    str, AfterValidator(_zone),
    WithJsonSchema({"type": "string", "enum": sorted(available_timezones()), "description": "An IANA time zone"}),
]


class JobTemplate(CamelModel):
    """The job each fire submits: the fields of POST /jobs that a recurring job can carry, as strict."""

    queue: Name
    job_type: Name
    payload: Payload = Field(default_factory=dict, description="A JSON object of at most 256 KiB of JSON text")
    priority: Priority = DEFAULT_PRIORITY
    max_attempts: MaxAttempts | None = Field(
        default=None,
        description=f"Default: the queue's `maxAttempts` when the job is fired, else {DEFAULT_MAX_ATTEMPTS}",
    )
    retry: RetrySubmission | None = Field(
        default=None, description="Default: the job type's policy (a worker setting), else the queue's",
    )
    timeout_ms: TimeoutMs | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    callback_url: CallbackUrl | None = None
    rate_limit_key: Label | None = None
    concurrency_key: Label | None = None
    fairness_key: Label | None = None


class ScheduleCreate(JobTemplate):
    """POST /api/v1/scheduled-jobs: the schedule and, beside it, the job template's fields."""

    name: Label
    cron: CronExpr
    timezone: ZoneName = "UTC"
    enabled: StrictBool = True
    misfire_policy: MisfirePolicy = "skip"


class SchedulePatch(CamelModel):
    """PATCH /api/v1/scheduled-jobs/{id}: any subset of ScheduleCreate's fields; the rest keep their value.

    A field given is validated as in ScheduleCreate once merged, so `null` only passes where that allows
    it; None marks a field as left out, and the document says so (no `null` for the others).
    """

    model_config = ConfigDict(json_schema_extra=null_only_for(NULLABLE))

    name: Label | None = None
    cron: CronExpr | None = None
    timezone: ZoneName | None = None
    enabled: StrictBool | None = None
    misfire_policy: MisfirePolicy | None = None
    queue: Name | None = None
    job_type: Name | None = None
    payload: Payload | None = None
    priority: Priority | None = None
    max_attempts: MaxAttempts | None = None
    retry: RetrySubmission | None = None
    timeout_ms: TimeoutMs | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    callback_url: CallbackUrl | None = None
    rate_limit_key: Label | None = None
    concurrency_key: Label | None = None
    fairness_key: Label | None = None


def template_of(schedule: ScheduleCreate) -> dict[str, Any]:
    """The job template to store: camelCase JSON, defaults applied."""
    return schedule.model_dump(mode="json", by_alias=True, include=set(JobTemplate.model_fields))


def plan_fire(
    template: dict[str, Any], *, now: datetime, max_payload_bytes: int, key: str | None = None,
    default_max_attempts: int | None = None,
) -> NewJob:
    """The job one fire submits, through the checks and normalization of POST /jobs (payload size, U+0000)."""
    return plan_job(JobFields.model_validate(template), [], now=now, max_payload_bytes=max_payload_bytes,
                    idempotency_key=key, default_max_attempts=default_max_attempts)


class ScheduleView(CamelModel):
    """A schedule (documentation only: handlers render plain dicts)."""

    id: uuid.UUID
    name: str
    cron: str
    timezone: str
    enabled: bool
    misfire_policy: MisfirePolicy
    next_fire_times: list[datetime] = Field(description=f"The next {PREVIEW_COUNT} fire times (UTC), even if disabled")
    last_fired_at: datetime | None
    job: JobTemplate


class ScheduleList(CamelModel):
    """GET /scheduled-jobs: the tenant's schedules, oldest first."""

    items: list[ScheduleView]


class Triggered(CamelModel):
    """202 of POST /scheduled-jobs/{id}/trigger."""

    job_id: uuid.UUID


def schedule_view(row: Any, now: datetime) -> dict[str, Any]:
    """The wire shape of a schedules row; `nextFireTimes` start at the stored next fire if due, else after `now`."""
    tz = zone(row["timezone"])
    start = row["next_fire_at"]
    if row["enabled"] and start is not None:  # a due fire not yet made comes first
        upcoming = [start, *fire_times(row["cron"], tz, start, PREVIEW_COUNT - 1)]
    else:
        upcoming = fire_times(row["cron"], tz, now)
    return {
        "id": row["id"], "name": row["name"], "cron": row["cron"], "timezone": row["timezone"],
        "enabled": row["enabled"], "misfirePolicy": row["misfire_policy"],
        "nextFireTimes": [t.isoformat() for t in upcoming],
        "lastFiredAt": row["last_fired_at"].isoformat() if row["last_fired_at"] else None,
        "job": row["job"],
    }
