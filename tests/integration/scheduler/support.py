"""Helpers of the scheduler tests: job rows written with SQL, events put on Kafka."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from shared.events import Envelope, EventType, encode
from shared.kafka.producer import EventProducer, OutgoingMessage, message_for

INSERT_JOB = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts, retry, timeout_ms,
                  scheduled_for, depends_on, attempts, state_attempt, state_rank, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, $11, $12, $13, $14, $15, COALESCE($16, now()))
"""


async def insert_job(
    pool: asyncpg.Pool,
    *,
    status: str = "pending",
    queue: str = "q",
    job_type: str = "noop",
    tenant: str = "acme",
    priority: int = 5,
    payload: dict[str, Any] | None = None,
    max_attempts: int = 3,
    retry: dict[str, Any] | None = None,
    timeout_ms: int | None = None,
    scheduled_for: datetime | None = None,
    depends_on: list[uuid.UUID] | None = None,
    attempts: int = 0,
    state: tuple[int, int] = (0, 0),
    updated_at: datetime | None = None,
) -> uuid.UUID:
    """A job row as the API (or an earlier scheduler step) would have left it."""
    job_id = uuid.uuid4()
    await pool.execute(
        INSERT_JOB, job_id, tenant, queue, job_type, status, priority,
        payload or {"n": 1}, max_attempts, retry or {"strategy": "fixed", "baseDelayMs": 10, "jitter": False},
        timeout_ms,
        scheduled_for, depends_on or [], attempts, state[0], state[1], updated_at,
    )
    return job_id


async def job_row(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    """The whole row of a job."""
    row = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def attempt_rows(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[asyncpg.Record]:
    """A job's attempt history, oldest first."""
    return list(await pool.fetch("SELECT * FROM job_attempts WHERE job_id = $1 ORDER BY attempt", job_id))


async def submitted_event(pool: asyncpg.Pool, job_id: uuid.UUID) -> Envelope:
    """The `submitted` envelope the API would emit for a row."""
    r = await job_row(pool, job_id)
    return Envelope(
        type=EventType.SUBMITTED, job_id=job_id, queue=r["queue"], job_type=r["job_type"], attempt=0,
        tenant=r["tenant"],
        data={"priority": r["priority"], "payload": r["payload"], "maxAttempts": r["max_attempts"],
              "retry": r["retry"], "timeoutMs": r["timeout_ms"],
              "runAt": r["scheduled_for"].isoformat() if r["scheduled_for"] else None,
              "dependsOn": [str(d) for d in r["depends_on"]], "tags": [], "batchId": None, "callbackUrl": None},
    )


def worker_event(kind: EventType, job_id: uuid.UUID, attempt: int, *, queue: str = "q", job_type: str = "noop",
                 tenant: str = "acme", **data: Any) -> Envelope:
    """An event as a worker would emit it."""
    return Envelope(type=kind, job_id=job_id, queue=queue, job_type=job_type, attempt=attempt, tenant=tenant,
                    data=data)


async def publish(producer: EventProducer, *envelopes: Envelope, key: uuid.UUID | None = None) -> None:
    """Put events on Kafka; `key` forces one partition (a marker lands behind the event it follows)."""
    if key is None:
        await producer.publish_events(envelopes)
        return
    messages = []
    for e in envelopes:
        m = message_for(e)
        messages.append(OutgoingMessage(m.topic, str(key).encode(), encode(e), m.headers))
    await producer.publish(messages)
