"""/api/v1/alerts and /api/v1/alert-rules (DESIGN §5), scoped as §10 says.

Reading alerts needs `read`: a tenant sees its own (its rules', its jobs' dead letters) and the
queue-level anomalies of queues it has jobs in; a `cluster` key sees every alert. Rules belong to a
tenant and need `admin`. The analytics service evaluates rules and raises the alerts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from services.api.alerts.schemas import (
    AlertList,
    AlertRuleCreate,
    AlertRuleList,
    AlertRulePatch,
    AlertRuleView,
    AlertStatus,
    alert_view,
    rule_view,
)
from services.api.http.deps import Deps
from services.api.http.openapi import json_body, problems
from services.api.http.patches import patched
from services.api.http.principal import Reader, require
from services.api.http.problems import NotFound
from services.api.http.responses import JsonResponse
from services.api.http.validation import parse_body, path_id
from services.api.store import alerts as store
from services.api.store.connections import connection, transaction
from shared.auth.principal import Principal, Scope

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
# What a rule's view holds of AlertRuleCreate (a PATCH merges into these).
_RULE_FIELDS = {"name", "queue", "jobType", "metric", "op", "threshold", "forS", "webhookUrl"}
NO_RULE = {404: "No alert rule with this id for the caller's tenant (a malformed id names none either)"}
INVALID = {422: "Invalid fields, each named in `errors` (metric, op, threshold, forS, webhookUrl ...); nothing stored"}


@router.get(
    "/alerts", response_model=AlertList, operation_id="listAlerts", summary="Alerts, newest first",
    description="The caller's tenant's alerts and the queue-level anomalies of queues it has jobs in "
                "(every alert with the `cluster` scope).",
    responses=problems(401, 403, 422, 503, meanings={422: "A bad `status` or `limit`; `errors` names it"}),
)
async def list_alerts(
    deps: Deps, principal: Reader,
    status: Annotated[AlertStatus | None, Query(description="Only open, or only resolved, alerts")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Newest opened first, at most `limit`."""
    tenant = principal.read_tenant
    async with connection(deps.pool) as conn:
        rows = await store.list_alerts(conn, tenant, status, limit)
    return JsonResponse({"items": [alert_view(r) for r in rows]})


@router.post(
    "/alert-rules", status_code=201, response_model=AlertRuleView, operation_id="createAlertRule",
    summary="Create an alert rule", openapi_extra=json_body(AlertRuleCreate),
    responses=problems(400, 401, 403, 413, 415, 422, 503, meanings=INVALID),
)
async def create_rule(request: Request, deps: Deps, principal: Admin) -> Response:
    """201 with the rule and its `id`; it is evaluated from the analytics service's next tick on."""
    rule = await parse_body(request, AlertRuleCreate)
    async with transaction(deps.pool) as conn:
        row = await store.insert_rule(conn, principal.tenant, rule)
    return JsonResponse(rule_view(row), status_code=201, headers={"Location": f"/api/v1/alert-rules/{row['id']}"})


@router.get(
    "/alert-rules", response_model=AlertRuleList, operation_id="listAlertRules", summary="The tenant's alert rules",
    responses=problems(401, 403, 503),
)
async def list_rules(deps: Deps, principal: Admin) -> Response:
    """Every rule of the caller's tenant, oldest first."""
    async with connection(deps.pool) as conn:
        rows = await store.list_rules(conn, principal.tenant)
    return JsonResponse({"items": [rule_view(r) for r in rows]})


@router.get(
    "/alert-rules/{rule_id}", response_model=AlertRuleView, operation_id="getAlertRule", summary="An alert rule",
    responses=problems(401, 403, 404, 503, meanings=NO_RULE),
)
async def get_rule(rule_id: str, deps: Deps, principal: Admin) -> Response:
    """The rule."""
    async with connection(deps.pool) as conn:
        row = await store.get_rule(conn, principal.tenant, path_id(rule_id, "alert rule"))
    if row is None:
        raise NotFound(f"no alert rule {rule_id}")
    return JsonResponse(rule_view(row))


@router.patch(
    "/alert-rules/{rule_id}", response_model=AlertRuleView, operation_id="updateAlertRule",
    summary="Change an alert rule", openapi_extra=json_body(AlertRulePatch),
    responses=problems(400, 401, 403, 404, 413, 415, 422, 503, meanings={**NO_RULE, **INVALID}),
)
async def update_rule(rule_id: str, request: Request, deps: Deps, principal: Admin) -> Response:
    """Any subset of the fields; the rest keep their value."""
    rid = path_id(rule_id, "alert rule")
    patch = await parse_body(request, AlertRulePatch)
    async with transaction(deps.pool) as conn:
        row = await store.get_rule(conn, principal.tenant, rid, lock=True)
        if row is None:
            raise NotFound(f"no alert rule {rule_id}")
        current = {k: v for k, v in rule_view(row).items() if k in _RULE_FIELDS}
        row = await store.update_rule(conn, principal.tenant, rid, patched(AlertRuleCreate, current, patch))
    return JsonResponse(rule_view(row))


@router.delete(
    "/alert-rules/{rule_id}", status_code=204, operation_id="deleteAlertRule", summary="Delete an alert rule",
    responses={
        204: {"description": "Deleted; an alert of it that is open resolves at the next evaluation"},
        **problems(401, 403, 404, 503, meanings=NO_RULE),
    },
)
async def delete_rule(rule_id: str, deps: Deps, principal: Admin) -> Response:
    """The rule is evaluated no more."""
    async with connection(deps.pool) as conn:
        if not await store.delete_rule(conn, principal.tenant, path_id(rule_id, "alert rule")):
            raise NotFound(f"no alert rule {rule_id}")
    return Response(status_code=204)
