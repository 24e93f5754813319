"""Accepting planned jobs: their rows and `submitted` outbox events in ONE transaction."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import asyncpg

from services.api.http.problems import Conflict, FieldError, ValidationFailed
from services.api.jobs.batch_plan import BatchPlan
from services.api.jobs.events import submitted_event
from services.api.jobs.job_plan import NewJob
from services.api.queues.admission import QueueFull, check_room
from services.api.store import batches, job_reads, job_writes
from services.api.store.connections import connection, transaction
from shared import outbox
from shared.ids import new_id
from shared.models import JobStatus
from shared.outbox import NOTHING, Outgoing
from shared.telemetry import job_traceparent


@dataclass(frozen=True)
class Accepted:
    """A stored job: `created` is False for an idempotent replay of an earlier submission.

    `outgoing`: the outbox rows written, for the relay once the response is on its way.
    """

    job_id: uuid.UUID
    status: str
    created: bool
    outgoing: Outgoing = NOTHING


async def accept_job(pool: asyncpg.Pool, tenant: str, job: NewJob, max_length: int | None = None) -> Accepted:
    """Store one job and its event, or find the job its idempotency key already names.

    `max_length`: the queue's; a full queue raises QueueFull (429) and stores nothing, unless the
    idempotency key names an existing job, which is then answered as a replay.
    """
    event = submitted_event(job, tenant)
    full: QueueFull | None = None
    if max_length is not None:
        async with transaction(pool) as conn:
            full = await check_room(conn, job.queue, max_length, 1)
            if full is None:
                if job.depends_on:
                    await _check_dependencies(conn, tenant, job)
                outgoing = await job_writes.insert_one(conn, tenant, job, event)
            elif job.idempotency_key is None:
                raise full
            else:
                outgoing = None  # a replay of a job stored earlier is still answered
    elif job.depends_on:
        async with transaction(pool) as conn:
            await _check_dependencies(conn, tenant, job)
            outgoing = await job_writes.insert_one(conn, tenant, job, event)
    else:
        async with connection(pool) as conn:
            outgoing = await job_writes.insert_one(conn, tenant, job, event)
    if outgoing is not None:
        return Accepted(job.id, JobStatus.PENDING.value, True, outgoing)
    # ON CONFLICT skipped the row: the key was used before (perhaps by a request racing this one).
    assert job.idempotency_key is not None
    async with connection(pool) as conn:
        found = await job_reads.find_by_idempotency_keys(conn, tenant, [job.idempotency_key])
    existing = found.get(job.idempotency_key)
    if existing is None and full is not None:
        raise full
    if existing is None or existing["request_hash"] != job.request_hash:
        raise Conflict(
            "this idempotency key was used for a different request",
            errors=[FieldError("idempotencyKey", "already used with a different body")],
        )
    return Accepted(existing["id"], existing["status"], False)


async def _check_dependencies(conn: asyncpg.Connection, tenant: str, job: NewJob) -> None:
    found = await job_reads.existing_ids(conn, tenant, job.depends_on)
    missing = [str(d) for d in job.depends_on if d not in found]
    if missing:
        raise ValidationFailed(
            "dependsOn names unknown jobs", errors=[FieldError("dependsOn", f"no such job: {', '.join(missing)}")]
        )


async def accept_batch(
    pool: asyncpg.Pool, tenant: str, plan: BatchPlan, max_lengths: Mapping[str, int] | None = None,
) -> tuple[uuid.UUID, Outgoing]:
    """Store a batch: one job_batches row, every job and every event, all or nothing.

    `max_lengths`: of the batch's queues that have one; the batch must fit in each (else QueueFull).
    """
    batch_id = new_id()
    jobs = plan.jobs
    async with transaction(pool) as conn:
        if plan.external:
            found = await job_reads.existing_ids(conn, tenant, list(plan.external))
            errors = [
                FieldError(f"jobs[{i}].dependsOn", f"no such job: {dep}")
                for dep, users in plan.external.items() if dep not in found for i in users
            ]
            if errors:
                errors.sort(key=lambda e: e.field)
                raise ValidationFailed("dependsOn names unknown jobs; nothing was stored", errors=errors)
        keyed = {j.idempotency_key: i for i, j in enumerate(jobs) if j.idempotency_key is not None}
        if keyed:
            used = await job_reads.find_by_idempotency_keys(conn, tenant, list(keyed))
            if used:
                raise _keys_used(keyed, set(used))
        if max_lengths:
            adding = Counter(j.queue for j in jobs)
            for queue in sorted(max_lengths):  # one lock order for every transaction: no deadlock
                full = await check_room(conn, queue, max_lengths[queue], adding[queue])
                if full is not None:
                    raise full
        await batches.insert_batch(conn, tenant, batch_id, len(jobs), plan.callback_url)
        trace = job_traceparent()  # one trace for the whole batch
        inserted = await job_writes.insert_jobs(conn, tenant, batch_id, jobs, trace)
        if len(inserted) != len(jobs):  # a concurrent request took a key after our check
            raise _keys_used(keyed, {j.idempotency_key for j in jobs if j.id not in inserted})
        outgoing = await outbox.enqueue(conn, [submitted_event(j, tenant, batch_id, trace) for j in jobs])
    return batch_id, outgoing


def _keys_used(keyed: dict[str, int], used: Collection[str | None]) -> Conflict:
    errors = [FieldError(f"jobs[{i}].idempotencyKey", "already used by an existing job") for k, i in keyed.items()
              if k in used]
    return Conflict("idempotency keys of this batch are already used; nothing was stored", errors=errors)
