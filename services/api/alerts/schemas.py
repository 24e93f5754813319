"""Alert rules' request models (validated strictly, field by field) and the views of rules and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from services.api.http.patches import null_only_for
from services.api.jobs.field_types import CallbackUrl, Label, Name, whole_number
from shared.models import CamelModel

Metric = Literal["failure_rate", "backlog", "oldest_waiting_age_ms", "p95_duration_ms"]
Op = Literal[">", "<"]
AlertKind = Literal["failure_rate", "duration", "backlog", "rule", "dead_letter"]
AlertStatus = Literal["open", "resolved"]
# Strict: a number, not a numeric string or a boolean (the document says `number`).
Threshold = Annotated[float, Field(strict=True, ge=0, le=1e15, description=(
    "Compared with the metric: failure_rate is a fraction 0-1, the others counts or milliseconds"))]
ForS = Annotated[int, Field(ge=0, le=86_400, description="Seconds the condition must hold before the alert opens"),
                 BeforeValidator(whole_number)]
# The fields PATCH may set to null (clearing them); for the others null is refused.
NULLABLE = {"queue", "jobType", "webhookUrl"}


class AlertRuleCreate(CamelModel):
    """POST /api/v1/alert-rules. Without `queue` / `jobType` the rule covers all of the tenant's."""

    name: Label
    queue: Name | None = None
    job_type: Name | None = None
    metric: Metric
    op: Op
    threshold: Threshold
    for_s: ForS
    webhook_url: CallbackUrl | None = Field(
        default=None, description="POSTed the alert, signed, when it opens and when it resolves")


class AlertRulePatch(CamelModel):
    """PATCH /api/v1/alert-rules/{id}: any subset of the fields; `null` clears queue, jobType or webhookUrl."""

    model_config = ConfigDict(json_schema_extra=null_only_for(NULLABLE))

    name: Label | None = None
    queue: Name | None = None
    job_type: Name | None = None
    metric: Metric | None = None
    op: Op | None = None
    threshold: Threshold | None = None
    for_s: ForS | None = None
    webhook_url: CallbackUrl | None = None


class AlertRuleView(AlertRuleCreate):
    """A rule as stored (documentation only: handlers render plain dicts)."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class AlertRuleList(CamelModel):
    """GET /alert-rules: the tenant's rules, oldest first."""

    items: list[AlertRuleView]


class AlertView(CamelModel):
    """An alert (DESIGN §5). Queue-level anomalies (failure_rate, duration, backlog) belong to no tenant."""

    alert_id: uuid.UUID
    kind: AlertKind
    queue: str | None = Field(description="null for a rule over every queue")
    job_type: str | None
    status: AlertStatus
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    details: dict[str, Any]


class AlertList(CamelModel):
    """GET /alerts: newest first."""

    items: list[AlertView]


def rule_view(row: Any) -> dict[str, Any]:
    """A rule row as JSON."""
    return {
        "id": str(row["id"]), "name": row["name"], "queue": row["queue"], "jobType": row["job_type"],
        "metric": row["metric"], "op": row["op"], "threshold": row["threshold"], "forS": row["for_s"],
        "webhookUrl": row["webhook_url"], "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


def alert_view(row: Any) -> dict[str, Any]:
    """An alert row as JSON."""
    return {
        "alertId": str(row["alert_id"]), "kind": row["kind"], "queue": row["queue"], "jobType": row["job_type"],
        "status": row["status"], "severity": row["severity"], "openedAt": row["opened_at"].isoformat(),
        "resolvedAt": row["resolved_at"].isoformat() if row["resolved_at"] else None, "details": row["details"],
    }
