"""Reads of the webhook deliveries the notifier records (DESIGN §5 `GET /jobs/{id}/deliveries`)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

DELIVERIES_OF_JOB = """
SELECT id, event_type, url, attempts, state FROM webhook_deliveries
WHERE job_id = $1 AND tenant = $2
ORDER BY created_at, id
"""


async def deliveries_of_job(conn: asyncpg.Connection, tenant: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """`{deliveryId, event, url, attempts, state}` of the job's deliveries, oldest first."""
    rows = await conn.fetch(DELIVERIES_OF_JOB, job_id, tenant)
    return [
        {"deliveryId": str(r["id"]), "event": r["event_type"], "url": r["url"], "attempts": r["attempts"],
         "state": r["state"]}
        for r in rows
    ]
