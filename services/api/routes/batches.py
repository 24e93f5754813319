"""/api/v1/job-batches: many jobs in one transaction, and their progress."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.api import metrics
from services.api.http.deps import Deps
from services.api.http.openapi import header, json_body, problems
from services.api.http.principal import Reader, Submitter
from services.api.http.problems import Conflict, FieldError, NotFound
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body
from services.api.jobs.accept import accept_batch
from services.api.jobs.batch_plan import plan_batch
from services.api.jobs.job_plan import NewJob
from services.api.jobs.schemas import BatchCreated, BatchSubmission, BatchView
from services.api.store import batches
from services.api.store.connections import connection
from shared.events import utcnow

router = APIRouter(prefix="/api/v1", tags=["batches"])


@router.post(
    "/job-batches",
    status_code=201,
    response_model=BatchCreated,
    operation_id="submitBatch",
    summary="Submit a batch of jobs",
    openapi_extra={
        **json_body(BatchSubmission), "responses": {"201": {"headers": {"Location": header("The batch's URL")}}},
    },
    responses=problems(400, 401, 403, 409, 413, 415, 422, 429, 503, meanings={
        409: "An idempotency key of the batch is already used, or the batch has more jobs for a queue than its "
             "`maxLength` (it can never fit); nothing was stored",
        422: "Invalid jobs (each field named in `errors`, such as `jobs[3].priority`); nothing was stored",
        429: "A queue of the batch has no room for its jobs (backlog + the batch's jobs > `maxLength`); nothing "
             "was stored. Try again after `Retry-After` seconds",
    }),
)
async def submit_batch(request: Request, deps: Deps, principal: Submitter) -> Response:
    """All jobs or none; `dependsOn` may name refs of the same batch. 201 `{batchId, jobIds}` in input order."""
    batch = await parse_body(request, BatchSubmission)
    rules = await deps.queue_rules.get_many({job.queue for job in batch.jobs})
    plan = plan_batch(
        batch, now=utcnow(), max_payload_bytes=deps.settings.max_payload_bytes,
        max_attempts={q: r.max_attempts for q, r in rules.items() if r.max_attempts is not None},
    )
    max_lengths = {q: r.max_length for q, r in rules.items() if r.max_length is not None}
    _check_fits(plan.jobs, max_lengths)
    batch_id, outgoing = await accept_batch(deps.pool, principal.tenant, plan, max_lengths)
    deps.publish(outgoing)
    metrics.BATCHES_SUBMITTED.inc()
    metrics.JOBS_SUBMITTED.labels("batch").inc(len(plan.jobs))
    return JsonResponse(
        {"batchId": batch_id, "jobIds": [j.id for j in plan.jobs]},
        status_code=201,
        headers={"Location": f"/api/v1/job-batches/{batch_id}"},
    )


def _check_fits(jobs: Sequence[NewJob], max_lengths: dict[str, int]) -> None:
    """A batch with more jobs for a queue than its maxLength can never be taken: 409, not 429 (waiting is no use)."""
    if not max_lengths:
        return
    adding = Counter(j.queue for j in jobs)
    errors = [
        FieldError("jobs", f"{adding[q]} jobs for queue {q!r}, whose maxLength is {limit}")
        for q, limit in sorted(max_lengths.items()) if adding[q] > limit
    ]
    if errors:
        raise Conflict("the batch cannot fit in its queues; nothing was stored", errors=errors)


@router.get(
    "/job-batches/{batch_id}", response_model=BatchView, operation_id="getBatch",
    summary="A batch's counts and status",
    responses=problems(401, 403, 404, 503, meanings={404: "No batch with this id for the caller's tenant"}),
)
async def get_batch(batch_id: str, deps: Deps, principal: Reader) -> Response:
    """Counts by state (`pending` includes every waiting state: blocked, scheduled, queued, retrying); `status`
    turns `completed`, with `completedAt`, once the scheduler has seen every job of the batch end."""
    try:
        bid = uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(f"no batch {batch_id}") from None
    async with connection(deps.pool) as conn:
        state = await batches.batch_state(conn, principal.tenant, bid)
    if state is None:
        raise NotFound(f"no batch {batch_id}")
    return JsonResponse({
        "batchId": bid, "counts": state.counts,
        "status": "running" if state.completed_at is None else "completed", "completedAt": state.completed_at,
    })
