"""`waitingReason` (DESIGN §5 "Why is it waiting"): from the job row, its dependencies and what Redis says.

Where several reasons apply the first of REASON_ORDER is shown. `paused`, the limits and the queue
position come from Redis (Dispatcher.wait_states), because that is what pop.lua obeys; one round
trip per page, for the waiting jobs only. Without an answer from Redis the job is shown without them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from services.api.store import job_reads
from shared.dispatch.protocol import Dispatcher
from shared.dispatch.records import WaitingJob
from shared.dispatch.waits import WaitState
from shared.models import WAITING, JobStatus

log = logging.getLogger(__name__)

REASON_ORDER = (
    "paused", "dependencies", "scheduled", "backoff", "concurrency_limited", "rate_limited", "queued", "pending",
)
# A read must not hang on Redis: past this the job is answered without the Redis-derived reasons.
WAIT_STATES_TIMEOUT_S = 1.0
_WAITING = {s.value for s in WAITING}


def is_waiting(row: Mapping[str, Any]) -> bool:
    """Whether the job has a waiting reason (neither running nor terminal)."""
    return row["status"] in _WAITING


async def unfinished_dependencies(
    conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]],
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """For each waiting row that has dependencies, those not completed yet (one query for all rows)."""
    with_deps = [
        r for r in rows if r["depends_on"] and r["status"] in (JobStatus.PENDING, JobStatus.BLOCKED)
    ]
    if not with_deps:
        return {}
    unfinished = await job_reads.unfinished_of(conn, {d for r in with_deps for d in r["depends_on"]})
    return {r["id"]: [d for d in r["depends_on"] if d in unfinished] for r in with_deps}


async def wait_states(dispatcher: Dispatcher | None, rows: Sequence[Mapping[str, Any]]) -> dict[uuid.UUID, WaitState]:
    """Redis's view of the waiting rows (one round trip); empty when Redis does not answer in time."""
    waiting = [r for r in rows if is_waiting(r)]
    if dispatcher is None or not waiting:
        return {}
    jobs = [WaitingJob(r["queue"], r["id"], r["rate_limit_key"], r["concurrency_key"]) for r in waiting]
    try:
        return await asyncio.wait_for(dispatcher.wait_states(jobs), timeout=WAIT_STATES_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("no wait states from redis, answering without them: %r", exc)
        return {}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def waiting_reason(
    row: Mapping[str, Any], waiting_on: list[uuid.UUID] | None, state: WaitState | None, now: datetime,
) -> dict[str, Any] | None:
    """The job's waitingReason, None for a running or terminal job."""
    if not is_waiting(row):
        return None
    status = row["status"]
    queue = row["queue"]
    if state is not None and state.paused:
        return {"code": "paused", "message": f"Queue {queue!r} is paused; no job of it starts until it is resumed."}
    if waiting_on:
        count = len(waiting_on)
        return {"code": "dependencies", "waitingOn": waiting_on,
                "message": f"Waiting for {count} unfinished {'dependency' if count == 1 else 'dependencies'}."}
    run_at = row["scheduled_for"]
    if run_at is not None and status in (JobStatus.PENDING, JobStatus.SCHEDULED) and (
        status == JobStatus.SCHEDULED or run_at > now
    ):
        return {"code": "scheduled", "until": _iso(run_at), "message": f"Scheduled to run at {_iso(run_at)}."}
    if status == JobStatus.RETRYING:
        attempt = row["attempts"] + 1
        until = _iso(row["next_run_at"])
        return {"code": "backoff", "until": until, "attempt": attempt,
                "message": f"Attempt {row['attempts']} failed; attempt {attempt} starts after its backoff, at {until}."}
    if state is not None and state.concurrency is not None:
        hold = state.concurrency
        whose = f"key {hold.key!r}" if hold.key is not None else f"queue {queue!r}"
        return {"code": "concurrency_limited", "key": hold.key, "running": hold.running, "limit": hold.limit,
                "message": f"The concurrency limit of {whose} is full: {hold.running} of {hold.limit} running."}
    if state is not None and state.rate is not None:
        rate = state.rate
        whose = f"key {rate.key!r}" if rate.key is not None else f"queue {queue!r}"
        until = _from_ms(rate.until_ms)
        return {"code": "rate_limited", "key": rate.key, "until": until,
                "message": f"The rate limit of {whose} is used up; the next start is allowed at {until}."}
    if status == JobStatus.QUEUED:
        ahead = state.ahead if state is not None and state.ready else None
        told = "" if ahead is None else f" {ahead} {'job is' if ahead == 1 else 'jobs are'} ahead of it."
        return {"code": "queued", "ahead": ahead, "message": f"Ready, waiting for a worker.{told}"}
    if status == JobStatus.BLOCKED:
        # Its dependencies all finished a moment ago: the scheduler is about to release it.
        return {"code": "pending", "message": "Dependencies done; about to be queued."}
    return {"code": "pending", "message": "Accepted; the scheduler has not taken it up yet."}
