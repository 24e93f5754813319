"""/api/v1/dlq: the dead-letter queue (a tenant's failed jobs): list, bulk retry, bulk delete, CSV export."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from services.api import metrics
from services.api.http.deps import ApiDeps, Deps
from services.api.http.openapi import problems
from services.api.http.principal import Reader, require
from services.api.http.problems import FieldError, ValidationFailed
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body
from services.api.jobs.dead_letters import csv_header, csv_rows, delete_dead_letters, retry_dead_letters
from services.api.jobs.field_types import NAME_PATTERN, DateTime
from services.api.jobs.schemas import (
    MAX_DLQ_ACTION,
    DeadLetterDeleted,
    DeadLetterRetried,
    DeadLetterSelection,
    JobPage,
)
from services.api.jobs.views import FAILURE_CURSOR_PATTERN, decode_failure_cursor, encode_failure_cursor, job_view
from services.api.store import dlq, job_reads
from services.api.store.connections import connection
from services.api.store.dispatch import clear_cancel_flag
from services.api.store.dlq import DeadLetterFilter
from shared.auth.principal import Principal, Scope

router = APIRouter(prefix="/api/v1", tags=["dlq"])

# DESIGN §10: the DLQ's bulk actions need `admin`; reading it needs `read`.
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
EXPORT_BATCH = 1000
ORDER = "Newest failure first: by the time the job failed (`completedAt`), then by id."
BULK = (
    f"Give `ids` or `filter`, exactly one. Ids that are not failed jobs of the caller's tenant are skipped, not "
    f"errors. An empty filter `{{}}` selects every failed job of the tenant. One call acts on at most "
    f"{MAX_DLQ_ACTION:,} jobs, the newest failures first; call again while it reports {MAX_DLQ_ACTION:,}."
)


def _inline_body(model: type[DeadLetterSelection]) -> dict[str, Any]:
    """`openapi_extra` declaring the JSON body with its nested models inlined (the route parses it itself)."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


SELECTION_BODY = _inline_body(DeadLetterSelection)
BAD_INPUT = {422: "Invalid fields (each named in `errors`): ids that are not UUIDs, both or neither of "
                  "`ids` and `filter`, unknown filter fields, dates that are not RFC 3339"}


def _aware(when: datetime | None) -> datetime | None:
    # A time without an offset is UTC, as everywhere in Conveyor.
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def _filters(
    queue: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    job_type: Annotated[str | None, Query(alias="jobType", pattern=NAME_PATTERN)] = None,
    error_type: Annotated[
        str | None, Query(alias="errorType", min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                          description="the `type` of the error the job failed with")
    ] = None,
    failed_after: Annotated[DateTime | None, Query(alias="failedAfter")] = None,
    failed_before: Annotated[DateTime | None, Query(alias="failedBefore")] = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        queue=queue, job_type=job_type, error_type=error_type,
        failed_after=_aware(failed_after), failed_before=_aware(failed_before),
    )


Filters = Annotated[DeadLetterFilter, Depends(_filters)]


def _selection(body: DeadLetterSelection) -> DeadLetterFilter:
    if body.ids is not None and body.filter is not None:
        raise ValidationFailed(errors=[FieldError("filter", "give ids or filter, not both")])
    if body.ids is not None:
        return DeadLetterFilter(ids=body.ids)
    if body.filter is None:
        raise ValidationFailed(errors=[FieldError("ids", "give ids or filter")])
    f = body.filter
    return DeadLetterFilter(
        queue=f.queue, job_type=f.job_type, error_type=f.error_type,
        failed_after=_aware(f.failed_after), failed_before=_aware(f.failed_before),
    )


@router.get(
    "/dlq", response_model=JobPage, operation_id="listDeadLetters", summary="List failed jobs",
    description=f"The caller's failed jobs, as job resources (the items of `GET /jobs`). {ORDER} "
                "Pass `nextCursor` back as `cursor` for the next page.",
    responses=problems(401, 403, 422, 503),
)
async def list_dead_letters(
    deps: Deps,
    principal: Reader,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=FAILURE_CURSOR_PATTERN, description="a `nextCursor` this API returned")
    ] = None,
) -> Response:
    """Filtered keyset pages of failed jobs, newest failure first."""
    if cursor:
        filters = replace(filters, after=decode_failure_cursor(cursor))
    async with connection(deps.pool) as conn:
        rows = await dlq.list_failed(conn, principal.tenant, filters, limit + 1)
        page = rows[:limit]
        attempts = await job_reads.attempts_of(conn, [r["id"] for r in page])
    last = page[-1] if page else None
    next_cursor = encode_failure_cursor(last["failed_at"], last["id"]) if last and len(rows) > limit else None
    items = [job_view(r, attempts.get(r["id"], [])) for r in page]
    return JsonResponse({"items": items, "nextCursor": next_cursor})


@router.post(
    "/dlq/retry", response_model=DeadLetterRetried, operation_id="retryDeadLetters", summary="Retry failed jobs",
    description="Moves failed jobs back to pending, in one transaction: each keeps its history, its attempt "
                "numbers continue, and it gets a fresh budget of `maxAttempts` (as `POST /jobs/{id}/retry`). "
                f"`jobIds` lists those retried, newest failure first. {BULK}",
    openapi_extra=SELECTION_BODY,
    responses=problems(400, 401, 403, 413, 415, 422, 503, meanings=BAD_INPUT),
)
async def retry_dead_letters_route(request: Request, deps: Deps, principal: Admin) -> Response:
    """Back to pending with a fresh attempt budget; `{retried, jobIds}`."""
    selection = _selection(await parse_body(request, DeadLetterSelection))
    retried = await retry_dead_letters(
        deps.pool, principal.tenant, selection, MAX_DLQ_ACTION, _flag_clearer(deps),
    )
    deps.publish(retried.outgoing)
    metrics.JOBS_RETRIED.inc(len(retried.job_ids))
    return JsonResponse({"retried": len(retried.job_ids), "jobIds": retried.job_ids})


def _flag_clearer(deps: ApiDeps) -> Callable[[uuid.UUID, str], Awaitable[None]] | None:
    dispatcher = deps.dispatcher
    if dispatcher is None:
        return None

    async def clear(job_id: uuid.UUID, queue: str) -> None:
        await clear_cancel_flag(dispatcher, queue, job_id)

    return clear


@router.post(
    "/dlq/delete", response_model=DeadLetterDeleted, operation_id="deleteDeadLetters", summary="Delete failed jobs",
    description="Deletes failed jobs with their attempts, in one transaction; their audit trail "
                "(`GET /jobs/{id}/events`) stays. A job that other jobs depend on is deleted too; its dependents "
                "are left as they are (they were cancelled with `dependency_failed` when it failed, and a "
                f"dependency that no longer exists counts as failed). {BULK}",
    openapi_extra=SELECTION_BODY,
    responses=problems(400, 401, 403, 413, 415, 422, 503, meanings=BAD_INPUT),
)
async def delete_dead_letters_route(request: Request, deps: Deps, principal: Admin) -> Response:
    """Delete failed jobs; `{deleted}`."""
    selection = _selection(await parse_body(request, DeadLetterSelection))
    deleted = await delete_dead_letters(deps.pool, principal.tenant, selection, MAX_DLQ_ACTION)
    return JsonResponse({"deleted": deleted})


class CsvResponse(StreamingResponse):
    """`text/csv`, streamed."""

    media_type = "text/csv"


@router.get(
    "/dlq/export.csv", response_class=CsvResponse, operation_id="exportDeadLetters",
    summary="Failed jobs as CSV",
    description=f"Columns `jobId,queue,jobType,attempts,errorType,errorMessage,failedAt,payload` (a header row, "
                f"RFC 4180 quoting, CRLF line ends, `payload` as compact JSON). {ORDER} Streamed in batches of "
                f"{EXPORT_BATCH:,} rows, so any number of rows can be exported.",
    responses={
        200: {"description": "The CSV text", "content": {"text/csv": {"schema": {"type": "string"}}}},
        **problems(401, 403, 422, 503),
    },
)
async def export_dead_letters(deps: Deps, principal: Reader, filters: Filters) -> Response:
    """Stream the matching failed jobs as CSV, a keyset batch at a time."""
    # The first batch is read before answering, so an unavailable database is a 503, not a broken stream.
    async with connection(deps.pool) as conn:
        first = await dlq.export_rows(conn, principal.tenant, filters, EXPORT_BATCH)
    return CsvResponse(_csv_stream(deps, principal.tenant, filters, first))


async def _csv_stream(
    deps: ApiDeps, tenant: str, filters: DeadLetterFilter, batch: list[Any]
) -> AsyncIterator[bytes]:
    yield csv_header()
    while batch:
        yield csv_rows(batch)
        if len(batch) < EXPORT_BATCH:
            return
        last = batch[-1]
        after = replace(filters, after=(last["failed_at"], last["id"]))
        # A connection per batch: a slow reader holds no pool connection between batches.
        async with connection(deps.pool) as conn:
            batch = await dlq.export_rows(conn, tenant, after, EXPORT_BATCH)
