"""Retries go Postgres first: the row says `retrying` before Redis holds the next attempt.

Also the cancel paths that end a job's Redis copy: the scheduler drops what a cancel left waiting,
a manual retry's fresh copy replaces a stale one, and a cancel requested while the job ran ends
it when its worker is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from services.scheduler.redis_steps import RedisSteps
from services.scheduler.service import SchedulerService
from shared.dispatch.protocol import JobRef, Lease
from shared.events import EventType, utcnow
from shared.models import JobSpec
from tests.fixtures.polling import poll_until
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

ERR = {"type": "transient", "message": "flaky", "retryable": True}


def steps_of(service: SchedulerService) -> RedisSteps:
    """The post-commit Redis steps of a running scheduler."""
    assert service.handler is not None
    return service.handler._committer.redis


async def _running(harness: Harness, lease_ms: int = 60_000, **fields: Any) -> tuple[uuid.UUID, Lease]:
    """A dispatched job a worker popped and started."""
    job = await harness.insert(**fields)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    [lease] = await harness.dispatcher.pop(["q"], 1, lease_ms, "worker-1")
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "running")
    return job, lease


def retry_event(job: uuid.UUID, attempt: int = 1) -> Any:
    now = utcnow()
    return worker_event(
        EventType.RETRY, job, attempt, error=ERR, nextRunAt=now.isoformat(), delayMs=0, workerId="w1",
        startedAt=now.isoformat(), endedAt=now.isoformat(),
    )


@pytest.mark.parametrize("release_first", [True, False], ids=["release-then-push", "push-then-release"])
async def test_a_retry_is_recorded_before_redis_holds_the_next_attempt(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, release_first: bool
) -> None:
    service = await harness.start()
    job, lease = await _running(harness)
    steps = steps_of(service)
    gate, pushing = asyncio.Event(), asyncio.Event()
    push = steps.push

    async def held_push(specs: Sequence[tuple[JobSpec, int]], **kwargs: Any) -> bool:
        if any(spec.job_id == job for spec, _ in specs):
            pushing.set()
            await gate.wait()
        return await push(specs, **kwargs)

    monkeypatch.setattr(steps, "push", held_push)
    await harness.publish(retry_event(job))
    await asyncio.wait_for(pushing.wait(), timeout=15)
    # Committed: the row says retrying while Redis still holds only the attempt that failed.
    row = await harness.row(job)
    assert (row["status"], row["state_attempt"], row["state_rank"]) == ("retrying", 1, 4)
    assert await harness.redis_attempt(job) == 1
    if release_first:
        assert await harness.dispatcher.release([lease]) == 1  # the worker's release
        assert await harness.redis_attempt(job) is None
    gate.set()
    await poll_until(lambda: harness.redis_attempt(job), lambda attempt: attempt == 2, timeout_s=15)
    if not release_first:
        # The push replaced the lease of attempt 1: the worker's late release and heartbeat fail harmlessly.
        assert await harness.dispatcher.heartbeat([lease], 5_000) == {job}
        assert await harness.dispatcher.release([lease]) == 0
    row = await harness.wait_status(job, "queued")
    assert (row["state_attempt"], row["attempts"]) == (2, 1)
    [again] = await harness.dispatcher.pop(["q"], 1, 5_000, "worker-2")
    assert (again.job_id, again.spec.attempt) == (job, 2)
    [dispatched_1, dispatched_2] = await harness.tap.wait(job, EventType.DISPATCHED, count=2)
    assert (dispatched_1.attempt, dispatched_2.attempt) == (1, 2)


async def test_a_retry_is_pushed_due_at_the_time_the_worker_named(harness: Harness) -> None:
    await harness.start()
    job, _ = await _running(harness)
    next_run = utcnow() + timedelta(minutes=10)
    await harness.publish(worker_event(
        EventType.RETRY, job, 1, error=ERR, nextRunAt=next_run.isoformat(), delayMs=600_000, workerId="w1",
        startedAt=utcnow().isoformat(), endedAt=utcnow().isoformat(),
    ))
    await poll_until(lambda: harness.redis_attempt(job), lambda attempt: attempt == 2, timeout_s=15)
    score = await harness.redis.zscore(harness.dispatcher.keys.queue("q").delayed, str(job))
    assert score == int(next_run.timestamp() * 1000)
    assert (await harness.row(job))["status"] == "retrying"


async def test_a_scheduler_restart_between_the_commit_and_the_push_loses_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await harness.start()
    job, lease = await _running(harness)
    pushed_nothing = asyncio.Event()

    async def crash_before_redis(specs: Sequence[tuple[JobSpec, int]], **kwargs: Any) -> bool:
        pushed_nothing.set()  # as if the process died right after its commit
        return False

    monkeypatch.setattr(steps_of(first), "push", crash_before_redis)
    await harness.publish(retry_event(job))
    await asyncio.wait_for(pushed_nothing.wait(), timeout=15)
    await harness.wait_status(job, "retrying")
    assert await harness.dispatcher.release([lease]) == 1  # the worker released after publishing `retry`
    await first.stop()
    assert await harness.redis_attempt(job) is None  # Redis holds no attempt at all

    # The next scheduler's reconciler finds the retrying row Redis lacks, and pushes its next attempt.
    await harness.start(reconcile_interval_s=0.3, reconcile_grace_s=0.3)
    row = await harness.wait_status(job, "queued", timeout_s=20)
    assert (row["state_attempt"], row["attempts"]) == (2, 1)
    assert await harness.redis_attempt(job) == 2
    assert await harness.ready_ids() == [job]


async def test_the_scheduler_drops_what_a_cancel_left_waiting(harness: Harness) -> None:
    await harness.start()
    job = await harness.insert()
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    # The api's cancel: the row first, then the flag; the copy stays until the scheduler sees the event.
    await harness.pool.execute(
        "UPDATE jobs SET status = 'cancelled', state_rank = 5, cancel_reason = 'cancelled_by_user' WHERE id = $1", job
    )
    assert await harness.dispatcher.cancel("q", job) == "waiting"
    assert await harness.redis_attempt(job) == 1
    await harness.publish(worker_event(EventType.CANCELLED, job, 1, reason="cancelled_by_user", by="api"))
    await poll_until(lambda: harness.redis_attempt(job), lambda attempt: attempt is None, timeout_s=15)
    assert await harness.ready_ids() == []


async def test_a_manual_retry_replaces_a_stale_copy_of_the_same_attempt_number(harness: Harness) -> None:
    await harness.start()
    job = await harness.insert(scheduled_for=utcnow() + timedelta(hours=1), max_attempts=3)
    await harness.submit(job)
    await harness.wait_status(job, "scheduled")
    assert await harness.redis_attempt(job) == 1  # held delayed as attempt 1; the row records attempt 0
    # Cancelled (the flag up, the event not seen yet), then at once retried by hand: the flag goes
    # down and the row is pending again, fresh budget, no schedule.
    await harness.pool.execute(
        "UPDATE jobs SET status = 'cancelled', state_rank = 5, cancel_reason = 'cancelled_by_user' WHERE id = $1", job
    )
    await harness.dispatcher.cancel("q", job)
    await harness.dispatcher.clear_cancel("q", job)
    await harness.pool.execute(
        "UPDATE jobs SET status = 'pending', state_rank = 0, scheduled_for = NULL, max_attempts = 7,"
        " cancel_reason = NULL WHERE id = $1", job,
    )
    await harness.submit(job)
    row = await harness.wait_status(job, "queued")
    assert row["state_attempt"] == 1  # the same number the stale copy had
    assert await harness.wait_ready(job) == [job]
    assert await harness.redis.zcard(harness.dispatcher.keys.queue("q").delayed) == 0
    [lease] = await harness.dispatcher.pop(["q"], 1, 5_000, "worker")
    assert (lease.spec.attempt, lease.spec.max_attempts) == (1, 7)  # the fresh copy, not the stale one


async def test_a_cancel_requested_while_running_ends_the_job_when_its_worker_is_lost(harness: Harness) -> None:
    await harness.start()
    job, lease = await _running(harness, lease_ms=300)
    # The api's cancel of a running job: the request on the row, the flag in Redis.
    await harness.pool.execute("UPDATE jobs SET cancel_requested = true WHERE id = $1", job)
    assert await harness.dispatcher.cancel("q", job) == "running"
    # The worker dies instead of stopping the handler: no worker is left to report the cancel.
    row = await harness.wait_status(job, "cancelled")
    assert row["cancel_reason"] == "cancelled_by_user"
    [retry] = await harness.tap.wait(job, EventType.RETRY)
    assert retry.data["error"]["type"] == "lease_expired"
    [cancelled] = await harness.tap.wait(job, EventType.CANCELLED)
    assert cancelled.data == {"reason": "cancelled_by_user", "by": "scheduler"}
    await poll_until(lambda: harness.dispatcher.leased([JobRef("q", job)]), lambda leased: leased == set(),
                     timeout_s=15)
    assert await harness.redis_attempt(job) is None
    assert lease.job_id == job
