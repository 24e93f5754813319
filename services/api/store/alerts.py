"""The alerts and alert_rules tables as the api sees them: statements and thin typed functions."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.api.alerts.schemas import AlertRuleCreate

_RULE_COLUMNS = "id, name, queue, job_type, metric, op, threshold, for_s, webhook_url, created_at, updated_at"
INSERT_RULE = f"""
INSERT INTO alert_rules (id, tenant, name, queue, job_type, metric, op, threshold, for_s, webhook_url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {_RULE_COLUMNS}
"""
GET_RULE = f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE id = $1 AND tenant = $2"
LOCK_RULE = f"{GET_RULE} FOR UPDATE"
LIST_RULES = f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE tenant = $1 ORDER BY created_at, id"
UPDATE_RULE = f"""
UPDATE alert_rules SET name = $3, queue = $4, job_type = $5, metric = $6, op = $7, threshold = $8, for_s = $9,
                       webhook_url = $10, updated_at = now()
WHERE id = $1 AND tenant = $2
RETURNING {_RULE_COLUMNS}
"""
DELETE_RULE = "DELETE FROM alert_rules WHERE id = $1 AND tenant = $2 RETURNING id"

# $1: the status or NULL; $2: the caller's tenant, or NULL for a `cluster` key (every alert). A tenant
# sees its own alerts and the queue-level ones (no tenant) of queues it has jobs in: those the alert
# was raised with, or any job of it in the jobs table (an index probe of jobs_queue_listing).
LIST_ALERTS = """
SELECT alert_id, kind, queue, job_type, status, severity, opened_at, resolved_at, details
FROM alerts a
WHERE ($1::text IS NULL OR a.status = $1)
  AND ($2::text IS NULL OR a.tenant = $2
       OR (a.tenant IS NULL AND ($2 = ANY(a.tenants)
                                 OR EXISTS (SELECT 1 FROM jobs j WHERE j.tenant = $2 AND j.queue = a.queue))))
ORDER BY a.opened_at DESC, a.alert_id DESC
LIMIT $3
"""


def _fields(rule: AlertRuleCreate) -> tuple[Any, ...]:
    return (rule.name, rule.queue, rule.job_type, rule.metric, rule.op, rule.threshold, rule.for_s, rule.webhook_url)


async def insert_rule(conn: asyncpg.Connection, tenant: str, rule: AlertRuleCreate) -> asyncpg.Record:
    """Store a new rule of the tenant."""
    row: asyncpg.Record = await conn.fetchrow(INSERT_RULE, uuid.uuid4(), tenant, *_fields(rule))
    return row


async def get_rule(conn: asyncpg.Connection, tenant: str, rule_id: uuid.UUID, *, lock: bool = False) -> Any:
    """The tenant's rule (locked for update if asked), or None."""
    return await conn.fetchrow(LOCK_RULE if lock else GET_RULE, rule_id, tenant)


async def list_rules(conn: asyncpg.Connection, tenant: str) -> list[asyncpg.Record]:
    """Every rule of the tenant, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(LIST_RULES, tenant)
    return rows


async def update_rule(conn: asyncpg.Connection, tenant: str, rule_id: uuid.UUID,
                      rule: AlertRuleCreate) -> asyncpg.Record:
    """Replace a (locked) rule's fields."""
    row: asyncpg.Record = await conn.fetchrow(UPDATE_RULE, rule_id, tenant, *_fields(rule))
    return row


async def delete_rule(conn: asyncpg.Connection, tenant: str, rule_id: uuid.UUID) -> bool:
    """Remove a rule (its open alert resolves at the detector's next tick); False if the tenant has none."""
    return await conn.fetchval(DELETE_RULE, rule_id, tenant) is not None


async def list_alerts(conn: asyncpg.Connection, tenant: str | None, status: str | None,
                      limit: int) -> list[asyncpg.Record]:
    """Alerts the caller may see (`tenant` None: all of them), newest first."""
    rows: list[asyncpg.Record] = await conn.fetch(LIST_ALERTS, status, tenant, limit)
    return rows
