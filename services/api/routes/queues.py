"""/api/v1/queues: queue figures and config (DESIGN §5), cluster resources (§10).

Reading needs `read` (counts are the caller's tenant's unless it holds `cluster`); PUT, pause and
resume need `cluster`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from services.api.http.deps import Deps
from services.api.http.openapi import json_body, problems
from services.api.http.principal import Reader, require
from services.api.http.problems import NotFound
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body
from services.api.jobs.field_types import NAME_PATTERN
from services.api.queues.manage import change_queue, read_queues
from services.api.queues.schemas import QueueConfigPatch, QueueList, QueueView, merged
from services.api.store.queues import QueueRow
from shared.auth.principal import Principal, Scope

router = APIRouter(prefix="/api/v1", tags=["queues"])

ClusterAdmin = Annotated[Principal, Depends(require(Scope.CLUSTER))]
QueueName = Annotated[str, Path(pattern=NAME_PATTERN, description="The queue's name")]

NO_QUEUE = {404: "No such queue: it never had a job (of the caller's tenant, without `cluster`) nor a config"}
NEEDS_CLUSTER = {403: "This API key lacks the `cluster` scope (queues are a cluster resource)"}
UNAVAILABLE = {503: "Postgres or Redis did not answer; nothing was changed. Try again (`Retry-After`)"}
APPLIES = ("It applies to every dispatch after this request has answered, on every replica. "
           "Answers the queue, as `GET /queues/{name}` does.")


@router.get(
    "/queues", response_model=QueueList, operation_id="listQueues", summary="Queues with their figures and config",
    description="Every queue that has a config, or jobs (of the caller's tenant unless the key holds `cluster`), "
                "by name.",
    responses=problems(401, 403, 503),
)
async def list_queues(deps: Deps, principal: Reader) -> Response:
    """Queues by name."""
    return JsonResponse({"items": await read_queues(deps.pool, principal.read_tenant)})


@router.get(
    "/queues/{name}", response_model=QueueView, operation_id="getQueue", summary="A queue",
    responses=problems(401, 403, 404, 422, 503, meanings={**NO_QUEUE, 422: "The name is not a queue name"}),
)
async def get_queue(name: QueueName, deps: Deps, principal: Reader) -> Response:
    """The queue's pause flag, config, counts by status, oldest waiting age and throughput."""
    found = await read_queues(deps.pool, principal.read_tenant, name)
    if not found:
        raise NotFound(f"no queue {name}")
    return JsonResponse(found[0])


async def _answer(deps: Deps, principal: Principal, row: QueueRow) -> Response:
    found = await read_queues(deps.pool, principal.read_tenant, row.name)
    return JsonResponse(found[0])


@router.put(
    "/queues/{name}", response_model=QueueView, operation_id="configureQueue", summary="Configure a queue",
    description="Takes any subset of the queue's `config`: keys left out keep their value, `null` clears one. "
                f"Creates the queue if it is new. {APPLIES}",
    openapi_extra=json_body(QueueConfigPatch),
    responses=problems(400, 401, 403, 413, 415, 422, 503, meanings={
        **NEEDS_CLUSTER, **UNAVAILABLE,
        422: "Invalid fields (each named in `errors`) or name; nothing was changed",
    }),
)
async def configure_queue(name: QueueName, request: Request, deps: Deps, principal: ClusterAdmin) -> Response:
    """Merge the partial config into the queue's, in Postgres and in Redis, before answering."""
    patch = await parse_body(request, QueueConfigPatch)

    def change(row: QueueRow) -> tuple[dict[str, Any], bool]:
        return merged(row.config, patch), row.paused

    return await _answer(deps, principal, await change_queue(deps, name, change))


def _pausing(paused: bool) -> Any:
    def change(row: QueueRow) -> tuple[dict[str, Any], bool]:
        return row.config, paused

    return change


@router.post(
    "/queues/{name}/pause", response_model=QueueView, operation_id="pauseQueue", summary="Pause a queue",
    description=f"The queue keeps accepting jobs and starts none; running jobs finish. {APPLIES}",
    responses=problems(401, 403, 422, 503, meanings={
        **NEEDS_CLUSTER, **UNAVAILABLE, 422: "The name is not a queue name",
    }),
)
async def pause_queue(name: QueueName, deps: Deps, principal: ClusterAdmin) -> Response:
    """Stop starting the queue's jobs (creates the queue if it is new)."""
    return await _answer(deps, principal, await change_queue(deps, name, _pausing(True)))


@router.post(
    "/queues/{name}/resume", response_model=QueueView, operation_id="resumeQueue", summary="Resume a queue",
    description=f"Its waiting jobs start again, in their order. {APPLIES}",
    responses=problems(401, 403, 422, 503, meanings={
        **NEEDS_CLUSTER, **UNAVAILABLE, 422: "The name is not a queue name",
    }),
)
async def resume_queue(name: QueueName, deps: Deps, principal: ClusterAdmin) -> Response:
    """Start the queue's jobs again (creates the queue if it is new)."""
    return await _answer(deps, principal, await change_queue(deps, name, _pausing(False)))
