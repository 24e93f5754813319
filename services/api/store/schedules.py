"""The schedules table as the api sees it: statements and the thin typed functions that run them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

_COLUMNS = "id, name, cron, timezone, enabled, misfire_policy, job, next_fire_at, last_fired_at"

# Every read carries Postgres's now(): fire times are judged by the database's clock, not the api's.
DB_NOW = "SELECT now()"

INSERT = f"""
INSERT INTO schedules (id, tenant, name, cron, timezone, enabled, misfire_policy, job, next_fire_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9)
RETURNING {_COLUMNS}
"""

GET = f"SELECT {_COLUMNS} FROM schedules WHERE id = $1 AND tenant = $2"
LOCK = f"{GET} FOR UPDATE"
LIST = f"SELECT {_COLUMNS} FROM schedules WHERE tenant = $1 ORDER BY created_at, id"
DELETE = "DELETE FROM schedules WHERE id = $1 AND tenant = $2 RETURNING id"

UPDATE = f"""
UPDATE schedules SET name = $3, cron = $4, timezone = $5, enabled = $6, misfire_policy = $7, job = $8::text::jsonb,
                     next_fire_at = $9, updated_at = now()
WHERE id = $1 AND tenant = $2
RETURNING {_COLUMNS}
"""


async def db_now(conn: asyncpg.Connection) -> datetime:
    """Postgres's clock (the transaction's start inside a transaction)."""
    now: datetime = await conn.fetchval(DB_NOW)
    return now


async def insert(
    conn: asyncpg.Connection, tenant: str, schedule_id: uuid.UUID, values: dict[str, Any],
    next_fire_at: datetime | None,
) -> asyncpg.Record:
    """Store a new schedule; `values` holds name, cron, timezone, enabled, misfire_policy and job."""
    row: asyncpg.Record = await conn.fetchrow(INSERT, schedule_id, tenant, *_fields(values), next_fire_at)
    return row


async def get(conn: asyncpg.Connection, tenant: str, schedule_id: uuid.UUID, *, lock: bool = False) -> Any:
    """The tenant's schedule (locked for update if asked), or None."""
    return await conn.fetchrow(LOCK if lock else GET, schedule_id, tenant)


async def list_all(conn: asyncpg.Connection, tenant: str) -> list[asyncpg.Record]:
    """Every schedule of the tenant, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(LIST, tenant)
    return rows


async def update(
    conn: asyncpg.Connection, tenant: str, schedule_id: uuid.UUID, values: dict[str, Any],
    next_fire_at: datetime | None,
) -> asyncpg.Record:
    """Replace a (locked) schedule's fields and its next fire time."""
    row: asyncpg.Record = await conn.fetchrow(UPDATE, schedule_id, tenant, *_fields(values), next_fire_at)
    return row


async def delete(conn: asyncpg.Connection, tenant: str, schedule_id: uuid.UUID) -> bool:
    """Remove a schedule; False if the tenant has none of this id."""
    return await conn.fetchval(DELETE, schedule_id, tenant) is not None


def _fields(values: dict[str, Any]) -> tuple[Any, ...]:
    return (
        values["name"], values["cron"], values["timezone"], values["enabled"], values["misfire_policy"],
        orjson.dumps(values["job"]).decode(),
    )
