"""/api/v1/workers: the worker registry (a cluster resource: `cluster` scope, DESIGN §10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from starlette.responses import Response

from services.api.http.deps import Deps
from services.api.http.openapi import problems
from services.api.http.principal import require
from services.api.http.responses import JsonResponse
from services.api.store import workers
from shared.auth.principal import Principal, Scope
from shared.dispatch.keys import GONE_LISTED_MS
from shared.models import CamelModel

router = APIRouter(prefix="/api/v1", tags=["workers"])

ClusterReader = Annotated[Principal, Depends(require(Scope.CLUSTER))]

LIST_DESCRIPTION = f"""Every worker in the registry the workers keep in Redis, ordered by `workerId`.

- `status`: `active` while it heartbeats; `draining` once it is stopping (it finishes its jobs and
  takes no new ones); `gone` when it stopped heartbeating (killed, frozen, cut off) for longer than
  its lease. A gone worker stays listed for {GONE_LISTED_MS // 60000} minutes after its last heartbeat,
  with `workerId` and `lastHeartbeatAt` only (`host`, `pid`, `concurrency`, `startedAt` null,
  `queues` and `running` empty): its jobs are requeued when their leases expire. A worker that
  stops cleanly leaves the list at once.
- `queues`: the queues it serves; `["{workers.ALL_QUEUES}"]` for a worker started without a queue list,
  which serves every queue, including queues created after it started.
- `running`: ids of the jobs it runs now (at most 100 are listed).
- `lastHeartbeatAt` is the worker's clock; whether it is gone is judged by Redis's.
"""


class WorkerItem(CamelModel):
    """One worker of GET /workers."""

    worker_id: str
    host: str | None
    pid: int | None
    queues: list[str]
    concurrency: int | None
    running: list[uuid.UUID]
    status: Literal["active", "draining", "gone"]
    started_at: datetime | None
    last_heartbeat_at: datetime


class WorkerList(CamelModel):
    """GET /workers."""

    items: list[WorkerItem]


@router.get(
    "/workers", response_model=WorkerList, operation_id="listWorkers", summary="The worker registry",
    description=LIST_DESCRIPTION,
    responses=problems(401, 403, 503, meanings={
        403: "This API key lacks the `cluster` scope (workers are a cluster resource)",
        503: "Redis, which holds the registry, did not answer",
    }),
)
async def list_workers(deps: Deps, principal: ClusterReader) -> Response:
    """Workers by id, live ones and those gone recently."""
    return JsonResponse({"items": await workers.list_workers(deps.dispatcher)})
