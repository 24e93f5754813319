"""Validate a batch as a whole: refs, dependencies between its jobs (no cycles), per-job limits."""

from __future__ import annotations

import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime

from services.api.http.problems import ApiError, FieldError, PayloadTooLarge, ValidationFailed
from services.api.jobs.job_plan import NewJob, plan_job
from services.api.jobs.schemas import BatchSubmission
from shared.ids import new_id


@dataclass(frozen=True)
class BatchPlan:
    """The jobs to insert, in input order, and which jobs name each dependency outside the batch."""

    jobs: list[NewJob]
    external: dict[uuid.UUID, list[int]]
    callback_url: str | None = None


def _cyclic(edges: dict[int, set[int]], count: int) -> list[int]:
    """Jobs on or behind a dependency cycle (Kahn's algorithm leaves exactly those)."""
    waiting_on = {i: len(edges.get(i, ())) for i in range(count)}
    dependents: dict[int, list[int]] = defaultdict(list)
    for job, deps in edges.items():
        for dep in deps:
            dependents[dep].append(job)
    ready = deque(i for i, n in waiting_on.items() if n == 0)
    while ready:
        done = ready.popleft()
        for job in dependents[done]:
            waiting_on[job] -= 1
            if waiting_on[job] == 0:
                ready.append(job)
    return sorted(i for i, n in waiting_on.items() if n > 0)


def plan_batch(
    batch: BatchSubmission, *, now: datetime, max_payload_bytes: int, max_attempts: dict[str, int] | None = None,
) -> BatchPlan:
    """Resolve refs to ids and check the batch; raises one problem listing every bad field.

    `max_attempts`: the queues' defaults for jobs that give none.
    """
    defaults = max_attempts or {}
    errors: list[FieldError] = []
    refs: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, job in enumerate(batch.jobs):
        if job.ref is not None:
            if job.ref in refs:
                errors.append(FieldError(f"jobs[{i}].ref", f"ref {job.ref!r} is already used by jobs[{refs[job.ref]}]"))
            else:
                refs[job.ref] = i
        if job.idempotency_key is not None:
            if job.idempotency_key in keys:
                errors.append(FieldError(
                    f"jobs[{i}].idempotencyKey", f"the same key is already used by jobs[{keys[job.idempotency_key]}]"
                ))
            else:
                keys[job.idempotency_key] = i

    ids = [new_id() for _ in batch.jobs]
    edges: dict[int, set[int]] = {}
    external: dict[uuid.UUID, list[int]] = defaultdict(list)
    resolved: list[list[uuid.UUID]] = []
    for i, job in enumerate(batch.jobs):
        deps: list[uuid.UUID] = []
        for name in job.depends_on:
            if name in refs:  # a ref of this batch wins over an id that happens to look the same
                edges.setdefault(i, set()).add(refs[name])
                deps.append(ids[refs[name]])
                continue
            try:
                dep_id = uuid.UUID(name)
            except ValueError:
                message = f"{name!r} is neither a ref of this batch nor a job id"
                errors.append(FieldError(f"jobs[{i}].dependsOn", message))
                continue
            external[dep_id].append(i)
            deps.append(dep_id)
        resolved.append(list(dict.fromkeys(deps)))
    for i in _cyclic(edges, len(batch.jobs)):
        errors.append(FieldError(f"jobs[{i}].dependsOn", "the dependencies of this job lead into a cycle"))

    jobs: list[NewJob] = []
    too_large: list[FieldError] = []
    for i, job in enumerate(batch.jobs):
        try:
            jobs.append(plan_job(
                job, resolved[i], now=now, max_payload_bytes=max_payload_bytes, prefix=f"jobs[{i}].", job_id=ids[i],
                default_max_attempts=defaults.get(job.queue),
            ))
        except PayloadTooLarge as exc:
            too_large += exc.errors
        except ApiError as exc:
            errors += exc.errors
    if too_large:
        raise PayloadTooLarge("a job payload is over the size limit", errors=too_large + errors)
    if errors:
        raise ValidationFailed("the batch has invalid jobs; nothing was stored", errors=errors)
    return BatchPlan(jobs, dict(external), batch.callback_url)
