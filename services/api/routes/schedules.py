"""/api/v1/scheduled-jobs: a tenant's cron schedules (DESIGN §5), managed with the `admin` scope (§10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from services.api.http.deps import Deps
from services.api.http.openapi import json_body, problems
from services.api.http.patches import patched
from services.api.http.principal import require
from services.api.http.problems import NotFound
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body, path_id
from services.api.jobs.accept import accept_job
from services.api.jobs.schedules import (
    ScheduleCreate,
    ScheduleList,
    SchedulePatch,
    ScheduleView,
    Triggered,
    plan_fire,
    schedule_view,
    template_of,
)
from services.api.store import schedules as store
from services.api.store.connections import connection, transaction
from shared.auth.principal import Principal, Scope
from shared.cron import next_fire, zone

router = APIRouter(prefix="/api/v1", tags=["schedules"])

Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
NO_SCHEDULE = {404: "No schedule with this id for the caller's tenant (a malformed id names none either)"}
INVALID = {
    422: "Invalid fields, each named in `errors` (a bad `cron` or unknown `timezone` among them); nothing stored",
}


async def _load(deps: Deps, tenant: str, schedule_id: str) -> tuple[Any, datetime]:
    """The tenant's schedule (404 when it has none by that id) and Postgres's `now()`."""
    sid = path_id(schedule_id, "schedule")
    async with connection(deps.pool) as conn:
        now = await store.db_now(conn)
        row = await store.get(conn, tenant, sid)
    if row is None:
        raise NotFound(f"no schedule {schedule_id}")
    return row, now


def _values(schedule: ScheduleCreate) -> dict[str, Any]:
    return {
        "name": schedule.name, "cron": schedule.cron, "timezone": schedule.timezone, "enabled": schedule.enabled,
        "misfire_policy": schedule.misfire_policy, "job": template_of(schedule),
    }


def _first_fire(schedule: ScheduleCreate, now: datetime) -> datetime | None:
    # Kept while disabled too; re-enabling computes it afresh, so a disabled spell is never caught up.
    return next_fire(schedule.cron, zone(schedule.timezone), now)


@router.post(
    "/scheduled-jobs", status_code=201, response_model=ScheduleView, operation_id="createSchedule",
    summary="Create a cron schedule", openapi_extra=json_body(ScheduleCreate),
    responses=problems(400, 401, 403, 413, 415, 422, 503, meanings=INVALID),
)
async def create_schedule(request: Request, deps: Deps, principal: Admin) -> Response:
    """Validate the schedule and its job template (as POST /jobs would the job); 201 with the next fire times."""
    schedule = await parse_body(request, ScheduleCreate)
    values = _values(schedule)
    async with transaction(deps.pool) as conn:
        now = await store.db_now(conn)
        plan_fire(values["job"], now=now, max_payload_bytes=deps.settings.max_payload_bytes)
        row = await store.insert(conn, principal.tenant, uuid.uuid4(), values, _first_fire(schedule, now))
    location = f"/api/v1/scheduled-jobs/{row['id']}"
    return JsonResponse(schedule_view(row, now), status_code=201, headers={"Location": location})


@router.get(
    "/scheduled-jobs", response_model=ScheduleList, operation_id="listSchedules", summary="The tenant's schedules",
    responses=problems(401, 403, 503),
)
async def list_schedules(deps: Deps, principal: Admin) -> Response:
    """Every schedule of the caller's tenant, oldest first."""
    async with connection(deps.pool) as conn:
        now = await store.db_now(conn)
        rows = await store.list_all(conn, principal.tenant)
    return JsonResponse({"items": [schedule_view(r, now) for r in rows]})


@router.get(
    "/scheduled-jobs/{schedule_id}", response_model=ScheduleView, operation_id="getSchedule", summary="A schedule",
    responses=problems(401, 403, 404, 503, meanings=NO_SCHEDULE),
)
async def get_schedule(schedule_id: str, deps: Deps, principal: Admin) -> Response:
    """The schedule with its next fire times (shown for a disabled one too)."""
    row, now = await _load(deps, principal.tenant, schedule_id)
    return JsonResponse(schedule_view(row, now))


@router.patch(
    "/scheduled-jobs/{schedule_id}", response_model=ScheduleView, operation_id="updateSchedule",
    summary="Change a schedule", openapi_extra=json_body(SchedulePatch),
    responses=problems(400, 401, 403, 404, 413, 415, 422, 503, meanings={**NO_SCHEDULE, **INVALID}),
)
async def update_schedule(schedule_id: str, request: Request, deps: Deps, principal: Admin) -> Response:
    """Any subset of the fields; a new cron, zone or enabling starts the fire times afresh from now."""
    sid = path_id(schedule_id, "schedule")
    patch = await parse_body(request, SchedulePatch)
    async with transaction(deps.pool) as conn:
        now = await store.db_now(conn)
        row = await store.get(conn, principal.tenant, sid, lock=True)
        if row is None:
            raise NotFound(f"no schedule {schedule_id}")
        current = {**row["job"], "name": row["name"], "cron": row["cron"], "timezone": row["timezone"],
                   "enabled": row["enabled"], "misfirePolicy": row["misfire_policy"]}
        schedule = patched(ScheduleCreate, current, patch)
        values = _values(schedule)
        plan_fire(values["job"], now=now, max_payload_bytes=deps.settings.max_payload_bytes)
        restart = (schedule.cron, schedule.timezone) != (row["cron"], row["timezone"]) or (
            schedule.enabled and not row["enabled"]
        )
        next_fire_at = _first_fire(schedule, now) if restart else row["next_fire_at"]
        row = await store.update(conn, principal.tenant, sid, values, next_fire_at)
    return JsonResponse(schedule_view(row, now))


@router.delete(
    "/scheduled-jobs/{schedule_id}", status_code=204, operation_id="deleteSchedule", summary="Delete a schedule",
    responses={
        204: {"description": "Deleted; jobs it already fired stay"},
        **problems(401, 403, 404, 503, meanings=NO_SCHEDULE),
    },
)
async def delete_schedule(schedule_id: str, deps: Deps, principal: Admin) -> Response:
    """The schedule fires no more; the jobs it fired are untouched."""
    sid = path_id(schedule_id, "schedule")
    async with connection(deps.pool) as conn:
        if not await store.delete(conn, principal.tenant, sid):
            raise NotFound(f"no schedule {schedule_id}")
    return Response(status_code=204)


@router.post(
    "/scheduled-jobs/{schedule_id}/trigger", status_code=202, response_model=Triggered, operation_id="triggerSchedule",
    summary="Fire a schedule now",
    responses=problems(401, 403, 404, 429, 503, meanings=NO_SCHEDULE),
)
async def trigger_schedule(schedule_id: str, deps: Deps, principal: Admin) -> Response:
    """Submit the schedule's job now, as POST /jobs would (a disabled schedule too); its cron times are unchanged."""
    row, now = await _load(deps, principal.tenant, schedule_id)
    rules = await deps.queue_rules.get(row["job"]["queue"])
    job = plan_fire(row["job"], now=now, max_payload_bytes=deps.settings.max_payload_bytes,
                    default_max_attempts=rules.max_attempts)
    outcome = await accept_job(deps.pool, principal.tenant, job, rules.max_length)
    deps.publish(outcome.outgoing)
    return JsonResponse({"jobId": outcome.job_id}, status_code=202)
