"""Tenants' alert rules (DESIGN §5): `metric op threshold` over the tenant's jobs in the rule's scope.

failure_rate and p95_duration_ms come from stats_minute over the recent window (no value when nothing
finished there: the rule then does not hold); backlog and oldest_waiting_age_ms are the current state,
from the jobs table's live index (store.BACKLOG). A rule's alert opens once its condition has held
`forS` and resolves once it stayed false `alert_rule_resolve_after_s`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.analytics.alerts.anomalies import Figures
from services.analytics.alerts.judging import Reading

KIND = "rule"
SEVERITY = "warning"


@dataclass(frozen=True)
class Rule:
    """An `alert_rules` row."""

    id: uuid.UUID
    tenant: str
    name: str
    queue: str | None
    job_type: str | None
    metric: str
    op: str
    threshold: float
    for_s: int
    webhook_url: str | None

    @property
    def key(self) -> str:
        """Its condition key."""
        return key_of(self.id)

    def covers(self, row: asyncpg.Record) -> bool:
        """Whether a per tenant, queue and job type row is in the rule's scope."""
        return (row["tenant"] == self.tenant and (self.queue is None or row["queue"] == self.queue)
                and (self.job_type is None or row["job_type"] == self.job_type))


def key_of(rule_id: uuid.UUID) -> str:
    """The condition key of a rule."""
    return f"{KIND}|{rule_id}"


def rule_of(row: asyncpg.Record) -> Rule:
    """A rule from store.RULES."""
    return Rule(**{k: row[k] for k in row.keys()})


def value_of(rule: Rule, window: Sequence[asyncpg.Record], backlog: Sequence[asyncpg.Record]) -> float | None:
    """The rule's metric now, or None when there is nothing to measure."""
    if rule.metric in ("backlog", "oldest_waiting_age_ms"):
        mine = [r for r in backlog if rule.covers(r)]
        if rule.metric == "backlog":
            return float(sum(r["backlog"] for r in mine))
        ages = [r["oldest_waiting_age_ms"] for r in mine if r["oldest_waiting_age_ms"] is not None]
        return float(max(ages)) if ages else None
    figures = Figures()
    for row in window:
        if rule.covers(row):
            figures.add(row)
    return figures.failure_rate if rule.metric == "failure_rate" else figures.p95_ms


def rule_reading(rule: Rule, window: Sequence[asyncpg.Record], backlog: Sequence[asyncpg.Record]) -> Reading:
    """Holds when the value is on the `op` side of the threshold; cleared whenever it does not hold."""
    value = value_of(rule, window, backlog)
    holds = value is not None and (value > rule.threshold if rule.op == ">" else value < rule.threshold)
    details: dict[str, Any] = {
        "ruleId": str(rule.id), "ruleName": rule.name, "metric": rule.metric, "op": rule.op,
        "threshold": rule.threshold, "forS": rule.for_s, "value": None if value is None else round(value, 4),
    }
    return Reading(
        rule.key, KIND, rule.queue, rule.job_type, SEVERITY, breaching=holds, cleared=not holds,
        details=details, tenant=rule.tenant, rule_id=rule.id, webhook_url=rule.webhook_url, open_after_s=rule.for_s,
    )
