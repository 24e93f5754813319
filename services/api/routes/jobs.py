"""/api/v1/jobs: submit, read, list, cancel, retry, audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.responses import Response

from services.api import metrics
from services.api.http.deps import Deps, app_deps
from services.api.http.openapi import header, json_body, problems
from services.api.http.principal import Reader, Submitter
from services.api.http.problems import FieldError, NotFound, ValidationFailed
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body
from services.api.jobs.accept import accept_job
from services.api.jobs.control import cancel_job, retry_job
from services.api.jobs.field_types import NAME_PATTERN, DateTime
from services.api.jobs.job_plan import plan_job
from services.api.jobs.schemas import (
    CancelResult,
    DeliveryList,
    EventList,
    JobPage,
    JobSubmission,
    JobView,
    Submitted,
)
from services.api.jobs.views import decode_cursor, encode_cursor, job_view
from services.api.jobs.waiting import unfinished_dependencies, wait_states, waiting_reason
from services.api.store import job_reads, webhooks
from services.api.store.connections import connection
from services.api.store.dispatch import cancel_in_redis, clear_cancel_flag
from services.api.store.job_reads import JobFilter
from shared.events import utcnow
from shared.models import JobStatus

router = APIRouter(prefix="/api/v1", tags=["jobs"])

IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Submitting again with the same key and body returns the first job (200); another body is a "
                   "409. If the body also has `idempotencyKey`, the two must be equal",
}
LOCATION = header("The job's URL")
NO_JOB = {404: "No job with this id for the caller's tenant (a malformed id names none either)"}
# Postgres text cannot hold U+0000: a filter containing it could match nothing, so it is refused.
NoNul = Annotated[str, Field(pattern=r"^[^\x00]*$")]


def parse_job_id(raw: str) -> uuid.UUID:
    """A path id; anything that is not a UUID names no job (404, like another tenant's id)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no job {raw}") from None


# ---------------------------------------------------------------------------------------------------
# The hot path. In the service, POST /api/v1/jobs does not reach this route through FastAPI's router:
# services/api/http/submit_lane.py (docs/adr/0004-submit-lane.md) sends it straight to `submit_job`,
# with the same principal dependency (require(Scope.SUBMIT)) and the app's own exception handlers, and
# skips route matching and dependency solving (measured: 25 % of the api's CPU per submission). The
# declaration below still documents the route and serves it when the lane is not installed.
# So: keep this endpoint's signature `(request, principal)`, and add no other dependency here; read
# what it needs from the request, as it does for `deps` and the Idempotency-Key header.
# ---------------------------------------------------------------------------------------------------
@router.post(
    "/jobs",
    status_code=201,
    response_model=Submitted,
    operation_id="submitJob",
    summary="Submit a job",
    openapi_extra={
        **json_body(JobSubmission),
        "parameters": [IDEMPOTENCY_HEADER],
        "responses": {"201": {"headers": {"Location": LOCATION}}},
    },
    responses={
        200: {"model": Submitted, "description": "Idempotent replay: the job this key already names",
              "headers": {"Location": LOCATION, "Idempotent-Replayed": header("`true`")}},
        **problems(400, 401, 403, 409, 413, 415, 422, 429, 503, meanings={
            409: "The idempotency key was used with a different body",
            422: "Invalid fields (each named in `errors`), or `dependsOn` names jobs the tenant does not have",
        }),
    },
)
async def submit_job(request: Request, principal: Submitter) -> Response:
    """Validate and store a job with its `submitted` event in one transaction; 201 `{jobId, status}`."""
    deps = app_deps(request)
    idempotency_key = request.headers.get("idempotency-key")
    sub = await parse_body(request, JobSubmission)
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255:
            raise ValidationFailed(errors=[FieldError("idempotencyKey", "must be 1-255 characters")])
        if sub.idempotency_key is not None and sub.idempotency_key != idempotency_key:
            raise ValidationFailed(errors=[FieldError("idempotencyKey", "differs from the Idempotency-Key header")])
    rules = await deps.queue_rules.get(sub.queue)
    job = plan_job(
        sub, sub.depends_on, now=utcnow(), max_payload_bytes=deps.settings.max_payload_bytes,
        idempotency_key=idempotency_key, default_max_attempts=rules.max_attempts,
    )
    outcome = await accept_job(deps.pool, principal.tenant, job, rules.max_length)
    body = {"jobId": outcome.job_id, "status": outcome.status}
    headers = {"Location": f"/api/v1/jobs/{outcome.job_id}"}
    if not outcome.created:
        metrics.IDEMPOTENT_REPLAYS.inc()
        return JsonResponse(body, status_code=200, headers={**headers, "Idempotent-Replayed": "true"})
    deps.publish(outcome.outgoing)
    metrics.JOBS_SUBMITTED.labels("single").inc()
    return JsonResponse(body, status_code=201, headers=headers)


@router.get(
    "/jobs/{job_id}", response_model=JobView, operation_id="getJob", summary="A job",
    responses=problems(401, 403, 404, 503, meanings=NO_JOB),
)
async def get_job(job_id: str, deps: Deps, principal: Reader) -> Response:
    """The job with its attempt history, progress, result and error."""
    jid = parse_job_id(job_id)
    async with connection(deps.pool) as conn:
        row = await job_reads.get_job(conn, principal.tenant, jid)
        if row is None:
            raise NotFound(f"no job {job_id}")
        attempts = await job_reads.attempts_of(conn, [jid])
        waiting_on = await unfinished_dependencies(conn, [row])
    states = await wait_states(deps.dispatcher, [row])
    reason = waiting_reason(row, waiting_on.get(jid), states.get(jid), utcnow())
    return JsonResponse(job_view(row, attempts.get(jid, []), reason))


@router.get(
    "/jobs", response_model=JobPage, operation_id="listJobs", summary="List jobs, newest first",
    responses=problems(401, 403, 422, 503, meanings={422: "Invalid parameters, or a cursor this API did not return"}),
)
async def list_jobs(
    deps: Deps,
    principal: Reader,
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    status: Annotated[list[JobStatus] | None, Query(description="repeat for any of several")] = None,
    job_type: Annotated[str | None, Query(alias="jobType", pattern=NAME_PATTERN)] = None,
    tag: Annotated[list[NoNul] | None, Query(description="repeat to require every tag")] = None,
    batch_id: Annotated[uuid.UUID | None, Query(alias="batchId")] = None,
    created_after: Annotated[DateTime | None, Query(alias="createdAfter")] = None,
    created_before: Annotated[DateTime | None, Query(alias="createdBefore")] = None,
    q: Annotated[
        NoNul | None, Query(max_length=200, description="a job id, or text in the job type or queue")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="a `nextCursor` this API returned")] = None,
) -> Response:
    """Filtered keyset pages: pass `nextCursor` back as `cursor`."""
    after = None
    if cursor:
        try:
            after = decode_cursor(cursor)
        except ValueError:
            raise ValidationFailed(errors=[FieldError("cursor", "not a cursor this API returned")]) from None
    filters = JobFilter(
        queue=queue, statuses=[s.value for s in status or []], job_type=job_type, tags=tag or [],
        batch_id=batch_id, created_after=_aware(created_after), created_before=_aware(created_before), q=q,
        after=after,
    )
    async with connection(deps.pool) as conn:
        rows = await job_reads.list_jobs(conn, principal.tenant, filters, limit + 1)
        page = rows[:limit]
        attempts = await job_reads.attempts_of(conn, [r["id"] for r in page])
        waiting_on = await unfinished_dependencies(conn, page)
    states = await wait_states(deps.dispatcher, page)
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    now = utcnow()
    items = [
        job_view(r, attempts.get(r["id"], []), waiting_reason(r, waiting_on.get(r["id"]), states.get(r["id"]), now))
        for r in page
    ]
    return JsonResponse({"items": items, "nextCursor": next_cursor})


def _aware(when: datetime | None) -> datetime | None:
    # A time without an offset is UTC, as everywhere in Conveyor.
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


@router.delete(
    "/jobs/{job_id}",
    response_model=CancelResult,
    operation_id="cancelJob",
    summary="Cancel a job",
    description=(
        "Cancels the job; it is not deleted: it stays readable, with its history, as `cancelled`.\n\n"
        "- A waiting job (pending, blocked, scheduled, queued, retrying) is cancelled at once: **200** "
        "`{jobId, status: cancelled}`, and a `cancelled` event is emitted.\n"
        "- A running job's worker is told to stop it: **202** `{jobId, status: running, cancelRequested: true}`; "
        "the worker reports the outcome.\n"
        "- A job that already completed, failed or was cancelled cannot be: **409**.\n\n"
        "A cancelled or failed job can run again with `POST /jobs/{id}/retry`."
    ),
    responses={
        202: {"model": CancelResult, "description": "Running: its worker was told to stop it"},
        **problems(401, 403, 404, 409, 503, meanings={
            **NO_JOB, 409: "The job already completed, failed or was cancelled",
        }),
    },
)
async def cancel_job_route(job_id: str, deps: Deps, principal: Submitter) -> Response:
    """Waiting jobs are cancelled at once (200); a running job's worker is told to stop it (202)."""
    jid = parse_job_id(job_id)
    outcome = await cancel_job(deps.pool, principal.tenant, jid)
    await cancel_in_redis(deps.dispatcher, outcome.queue, jid)
    if outcome.immediate:
        deps.publish(outcome.outgoing)
        metrics.JOBS_CANCELLED.labels("cancelled").inc()
        return JsonResponse({"jobId": jid, "status": JobStatus.CANCELLED.value})
    metrics.JOBS_CANCELLED.labels("requested").inc()
    return JsonResponse({"jobId": jid, "status": JobStatus.RUNNING.value, "cancelRequested": True}, status_code=202)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=Submitted,
    operation_id="retryJob",
    summary="Retry a failed or cancelled job",
    responses=problems(401, 403, 404, 409, 503, meanings={
        **NO_JOB, 409: "Only a failed or cancelled job can be retried",
    }),
)
async def retry_job_route(job_id: str, deps: Deps, principal: Submitter) -> Response:
    """Back to pending with a fresh attempt budget; attempt numbers keep counting up."""
    jid = parse_job_id(job_id)
    dispatcher = deps.dispatcher

    async def clear(target: uuid.UUID, queue: str) -> None:
        if dispatcher is not None:
            await clear_cancel_flag(dispatcher, queue, target)

    deps.publish(await retry_job(deps.pool, principal.tenant, jid, clear))
    metrics.JOBS_RETRIED.inc()
    return JsonResponse({"jobId": jid, "status": JobStatus.PENDING.value})


@router.get(
    "/jobs/{job_id}/events", response_model=EventList, operation_id="listJobEvents", summary="A job's audit trail",
    responses=problems(401, 403, 404, 503, meanings=NO_JOB),
)
async def job_events(job_id: str, deps: Deps, principal: Reader) -> Response:
    """Every recorded event envelope of the job, oldest first."""
    jid = parse_job_id(job_id)
    async with connection(deps.pool) as conn:
        if not await job_reads.job_exists(conn, principal.tenant, jid):
            raise NotFound(f"no job {job_id}")
        items = await job_reads.events_of(conn, jid)
    return JsonResponse({"items": items})


@router.get(
    "/jobs/{job_id}/deliveries", response_model=DeliveryList, operation_id="listJobDeliveries",
    summary="The job's webhook deliveries",
    responses=problems(401, 403, 404, 503, meanings=NO_JOB),
)
async def job_deliveries(job_id: str, deps: Deps, principal: Reader) -> Response:
    """Every call of the job's callbackUrl (its terminal event) with each try, oldest first."""
    jid = parse_job_id(job_id)
    async with connection(deps.pool) as conn:
        if not await job_reads.job_exists(conn, principal.tenant, jid):
            raise NotFound(f"no job {job_id}")
        items = await webhooks.deliveries_of_job(conn, principal.tenant, jid)
    return JsonResponse({"items": items})
