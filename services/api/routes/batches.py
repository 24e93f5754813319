"""/api/v1/job-batches: many jobs in one transaction, and their progress."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.api import batches_sql, metrics
from services.api.batch_plan import plan_batch
from services.api.db import connection
from services.api.deps import Deps, Reader, Submitter
from services.api.openapi import json_body
from services.api.problems import NotFound
from services.api.responses import JsonResponse
from services.api.schemas import BatchCreated, BatchSubmission, BatchView
from services.api.submit import submit_batch
from services.api.validation import parse_body
from shared.events import utcnow

router = APIRouter(prefix="/api/v1", tags=["batches"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post(
    "/job-batches",
    status_code=201,
    response_model=BatchCreated,
    summary="Submit a batch of jobs",
    openapi_extra=json_body(BatchSubmission),
    responses={409: _PROBLEM, 413: _PROBLEM, 422: _PROBLEM},
)
async def submit(request: Request, deps: Deps, principal: Submitter) -> Response:
    """All jobs or none; `dependsOn` may name refs of the same batch. 201 `{batchId, jobIds}` in input order."""
    batch = await parse_body(request, BatchSubmission)
    plan = plan_batch(batch, now=utcnow(), max_payload_bytes=deps.settings.max_payload_bytes)
    batch_id, outgoing = await submit_batch(deps.pool, principal.tenant, plan)
    deps.publish(outgoing)
    metrics.BATCHES_SUBMITTED.inc()
    metrics.JOBS_SUBMITTED.labels("batch").inc(len(plan.jobs))
    return JsonResponse(
        {"batchId": batch_id, "jobIds": [j.id for j in plan.jobs]},
        status_code=201,
        headers={"Location": f"/api/v1/job-batches/{batch_id}"},
    )


@router.get("/job-batches/{batch_id}", response_model=BatchView, summary="A batch's counts", responses={404: _PROBLEM})
async def get_batch(batch_id: str, deps: Deps, principal: Reader) -> Response:
    """Counts by state; `pending` includes every waiting state (blocked, scheduled, queued, retrying)."""
    try:
        bid = uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(f"no batch {batch_id}") from None
    async with connection(deps.pool) as conn:
        row = await conn.fetchrow(batches_sql.BATCH_COUNTS, bid, principal.tenant)
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    counts = {k: row[k] for k in ("total", "pending", "running", "completed", "failed", "cancelled")}
    return JsonResponse({"batchId": bid, "counts": counts})
