"""Expired worker leases: the lost attempt is recorded and the next one queued (or the job fails)."""

from __future__ import annotations

import uuid

from shared.events import EventType, utcnow
from tests.fixtures.polling import poll_until
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event


async def _popped(harness: Harness, lease_ms: int = 300, **fields: object) -> uuid.UUID:
    """A dispatched job a worker popped with a short lease, started, then lost (never acked)."""
    job = await harness.insert(**fields)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    [lease] = await harness.dispatcher.pop(["q"], 1, lease_ms, "doomed-worker")
    assert lease.job_id == job
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="doomed", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "running")
    return job


async def test_an_expired_lease_is_retried_as_the_next_attempt(harness: Harness) -> None:
    await harness.start()
    job = await _popped(harness)

    [retry] = await harness.tap.wait(job, EventType.RETRY)
    assert retry.attempt == 1 and retry.tenant == "acme"
    assert retry.data["error"] == {
        "type": "lease_expired", "message": "worker lease expired (worker lost)", "retryable": True,
    }
    assert retry.data["delayMs"] == 0 and retry.data["nextRunAt"]
    # ... and the next attempt is back in the ready set, recorded as queued.
    row = await harness.wait_status(job, "queued")
    assert (row["state_attempt"], row["attempts"]) == (2, 1)
    assert row["error"]["type"] == "lease_expired"
    assert await harness.ready_ids() == [job]
    assert await harness.redis_attempt(job) == 2
    [lease] = await harness.dispatcher.pop(["q"], 1, 5000, "healthy-worker")
    assert lease.spec.attempt == 2
    [dispatched_1, dispatched_2] = await harness.tap.wait(job, EventType.DISPATCHED, count=2)
    assert (dispatched_1.attempt, dispatched_2.attempt) == (1, 2)
    [attempt] = await harness.attempts(job)
    assert (attempt["attempt"], attempt["status"], attempt["worker_id"]) == (1, "failed", "doomed")
    assert attempt["error"]["type"] == "lease_expired"


async def test_an_expired_last_attempt_fails_the_job_and_its_dependents(harness: Harness) -> None:
    await harness.start()
    job = await _popped(harness, max_attempts=1)
    dependent = await harness.insert(depends_on=[job])
    await harness.submit(dependent)
    await harness.wait_status(dependent, "blocked")

    [failed] = await harness.tap.wait(job, EventType.FAILED)
    assert failed.attempt == 1 and failed.data["reason"] == "exhausted"
    assert failed.data["error"]["type"] == "lease_expired"
    row = await harness.wait_status(job, "failed")
    assert row["completed_at"] is not None
    assert await harness.redis_attempt(job) is None
    row = await harness.wait_status(dependent, "cancelled")
    assert row["cancel_reason"] == "dependency_failed"


async def test_a_lease_that_expires_after_the_job_finished_does_not_run_it_again(harness: Harness) -> None:
    await harness.start()
    job = await _popped(harness, lease_ms=1500)
    now = utcnow().isoformat()
    # The worker published its completion, then died before releasing the lease.
    await harness.publish(worker_event(EventType.COMPLETED, job, 1, result=1, startedAt=now, endedAt=now))
    await harness.wait_status(job, "completed")
    before = len(harness.tap.events)
    # The expired lease is read; the row is over, so the scheduler releases it and Redis forgets the job.
    await poll_until(lambda: harness.redis_attempt(job), lambda attempt: attempt is None, timeout_s=10)
    assert await harness.ready_ids() == []
    assert not [e for e in harness.tap.events[before:] if e.job_id == job and e.type is EventType.RETRY]


async def test_a_lease_lost_before_the_job_started_is_handed_out_again_at_the_same_attempt(harness: Harness) -> None:
    # Popped, then the worker died before Kafka acknowledged its `started`: nothing ran, so
    # nothing is used up (with one attempt allowed, the job must still get its one run).
    await harness.start()
    job = await harness.insert(max_attempts=1)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    [lost] = await harness.dispatcher.pop(["q"], 1, 300, "doomed-worker")
    ready = await poll_until(harness.ready_ids, lambda ids: ids == [job], timeout_s=10)
    assert ready == [job]
    assert await harness.redis_attempt(job) == 1
    row = await harness.row(job)
    assert (row["status"], row["state_attempt"], row["state_rank"], row["attempts"]) == ("queued", 1, 1, 0)
    assert await harness.attempts(job) == []
    [again] = await harness.dispatcher.pop(["q"], 1, 5000, "healthy-worker")
    assert (again.spec.attempt, again.spec.max_attempts) == (1, 1)
    assert again.token != lost.token  # the generation is the lease token: the dead worker is fenced out
    assert await harness.dispatcher.heartbeat([lost], 5000) == {job}
    assert await harness.dispatcher.release([lost]) == 0
    assert not [e for e in harness.tap.events if e.job_id == job and e.type in (EventType.RETRY, EventType.FAILED)]
