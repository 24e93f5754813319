"""Cancelling and manually retrying jobs (row change + outbox event in one transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from services.api.http.problems import Conflict, NotFound
from services.api.jobs.events import cancelled_event, submitted_data
from services.api.store import job_reads, job_writes
from services.api.store.connections import transaction
from shared import outbox
from shared.events import Envelope, EventType
from shared.models import WAITING, JobStatus
from shared.outbox import NOTHING, Outgoing


@dataclass(frozen=True)
class Cancelled:
    """`immediate`: the job is now cancelled; otherwise it is running and its worker must stop it."""

    job_id: uuid.UUID
    queue: str
    immediate: bool
    outgoing: Outgoing = NOTHING


async def cancel_job(pool: asyncpg.Pool, tenant: str, job_id: uuid.UUID) -> Cancelled:
    """Cancel a waiting job at once, or mark a running one for its worker; terminal jobs are a 409."""
    async with transaction(pool) as conn:
        row = await job_writes.lock_job(conn, tenant, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        status = row["status"]
        if status in WAITING:
            await job_writes.cancel_now(conn, job_id)
            outgoing = await outbox.enqueue(conn, [cancelled_event(
                job_id, tenant, queue=row["queue"], job_type=row["job_type"], attempt=row["state_attempt"],
                trace_parent=row["trace_parent"],
            )])
            return Cancelled(job_id, row["queue"], True, outgoing)
        if status == JobStatus.RUNNING:
            await job_writes.request_cancel(conn, job_id)
            return Cancelled(job_id, row["queue"], False)
    raise Conflict(f"job {job_id} is already {status}")


async def retry_job(
    pool: asyncpg.Pool,
    tenant: str,
    job_id: uuid.UUID,
    clear_cancel_flag: Callable[[uuid.UUID, str], Awaitable[None]] | None = None,
) -> Outgoing:
    """Move a failed or cancelled job back to pending with a fresh attempt budget; returns its outbox rows."""
    async with transaction(pool) as conn:
        row = await job_writes.reset_for_retry(conn, tenant, job_id)
        if row is None:
            status = await job_reads.job_status(conn, tenant, job_id)
            if status is None:
                raise NotFound(f"no job {job_id}")
            raise Conflict(f"only failed or cancelled jobs can be retried; job {job_id} is {status}")
        if row["previous_status"] == JobStatus.CANCELLED and clear_cancel_flag is not None:
            # Before commit: a stale cancel flag in Redis would make a worker drop the retried job.
            await clear_cancel_flag(job_id, row["queue"])
        data = submitted_data(
            priority=row["priority"], payload=row["payload"], max_attempts=row["max_attempts"], retry=row["retry"],
            timeout_ms=row["timeout_ms"], run_at=None, depends_on=row["depends_on"], tags=row["tags"],
            batch_id=row["batch_id"], callback_url=row["callback_url"],
        )
        data["manualRetry"] = True
        return await outbox.enqueue(conn, [Envelope(
            type=EventType.SUBMITTED, job_id=job_id, queue=row["queue"], job_type=row["job_type"], attempt=0,
            tenant=tenant, trace_parent=row["trace_parent"], data=data,
        )])
