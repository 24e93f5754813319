"""Reconciliation: Postgres is the truth; what Redis lost is dispatched again, lost leases requeued."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta

import asyncpg
from prometheus_client import REGISTRY

from services.scheduler.service import SchedulerService
from services.scheduler.store.reconcile import LOCK_KEY
from shared.events import EventType, utcnow
from shared.settings import SchedulerSettings
from tests.fixtures.polling import eventually, poll_until
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

LONG_AGO = utcnow() - timedelta(minutes=5)


async def run_pass(service: SchedulerService) -> Counter[str]:
    """One reconciliation pass (waiting out the periodic one if it holds the lock)."""
    assert service.reconciler is not None
    reconciler = service.reconciler
    # The periodic pass made at start must be over, or it could have seen this test's rows.
    await eventually(lambda: reconciler.passes, lambda n: n >= 1, timeout_s=10)

    async def attempt() -> Counter[str] | None:
        return await reconciler.run_pass()

    result = await poll_until(attempt, lambda counts: counts is not None, timeout_s=10)
    assert result is not None
    return result


async def _queued(harness: Harness, n: int) -> list[uuid.UUID]:
    jobs = [await harness.insert() for _ in range(n)]
    await harness.submit(*jobs)
    for job in jobs:
        await harness.wait_status(job, "queued")
    return jobs


async def _aged(harness: Harness, job: uuid.UUID) -> None:
    """Until the row was last changed over 0.4 s ago: past a grace of 0.3 s."""
    too_young = timedelta(seconds=0.4)
    await poll_until(lambda: harness.row(job), lambda r: r["updated_at"] < utcnow() - too_young, timeout_s=15)


async def _comparing(service: SchedulerService) -> None:
    """Until a pass would compare Redis with Postgres: a slow batch (a loaded machine) holds passes
    back for two reconcile intervals, and such a pass suspects nothing."""
    reconciler = service.reconciler
    assert reconciler is not None
    await eventually(lambda: reconciler.holding_back, lambda held: not held, timeout_s=40)


def _reconciled(kind: str) -> float:
    return REGISTRY.get_sample_value("conveyor_scheduler_reconciled_total", {"kind": kind}) or 0.0


async def test_queued_jobs_lost_by_redis_are_dispatched_again(harness: Harness) -> None:
    await harness.start(reconcile_interval_s=0.5, reconcile_grace_s=0.5)
    jobs = await _queued(harness, 3)
    before = _reconciled("queued")
    assert await harness.lose_redis_data() > 0
    assert await harness.ready_ids() == []

    ready = await poll_until(harness.ready_ids, lambda ids: sorted(ids) == sorted(jobs), timeout_s=20)
    assert len(ready) == 3
    for job in jobs:
        # The same attempt again: no worker ever started attempt 1, so it is not used up.
        assert await harness.redis_attempt(job) == 1
        row = await harness.row(job)
        assert (row["status"], row["state_attempt"], row["state_rank"], row["attempts"]) == ("queued", 1, 1, 0)
        assert await harness.attempts(job) == []
        dispatched = await harness.tap.wait(job, EventType.DISPATCHED)
        assert [e.attempt for e in dispatched] == [1]
        assert not [e for e in harness.tap.events if e.job_id == job and e.type is EventType.RETRY]
    assert _reconciled("queued") - before == 3


async def test_a_redispatched_job_with_one_attempt_still_runs_once(harness: Harness) -> None:
    await harness.start(reconcile_interval_s=0.5, reconcile_grace_s=0.5)
    job = await harness.insert(max_attempts=1)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    await harness.lose_redis_data()
    await harness.wait_ready(job)
    [lease] = await harness.dispatcher.pop(["q"], 1, 5000, "worker-after-the-loss")
    assert (lease.spec.attempt, lease.spec.max_attempts) == (1, 1)  # 1 of 1, not 2 of 1


async def test_a_job_is_repaired_only_when_a_second_pass_still_misses_it(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=0.3)
    jobs = await _queued(harness, 2)
    await harness.lose_redis_data()
    await _aged(harness, jobs[-1])
    await _comparing(service)
    first = await run_pass(service)
    assert first["queued"] == 0 and await harness.ready_ids() == []  # absent once: only suspected
    await _comparing(service)
    second = await run_pass(service)
    assert second["queued"] == 2
    await poll_until(harness.ready_ids, lambda ids: sorted(ids) == sorted(jobs), timeout_s=15)
    third = await run_pass(service)
    assert third["queued"] == 0  # held again: nothing more to do


async def test_a_pending_row_whose_submission_never_arrived_is_dispatched(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=1.0)
    lost = await harness.insert(updated_at=LONG_AGO)
    fresh = await harness.insert()  # its submission may still be on its way
    counts = await run_pass(service)
    assert counts["pending"] == 1
    row = await harness.wait_status(lost, "queued")
    assert row["state_attempt"] == 1
    await harness.wait_ready(lost)
    [dispatched] = await harness.tap.wait(lost, EventType.DISPATCHED)
    assert dispatched.attempt == 1
    assert (await harness.row(fresh))["status"] == "pending"


async def test_a_running_job_whose_lease_vanished_runs_again(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=1.0)
    job = await harness.insert(status="running", attempts=1, state=(1, 2), updated_at=LONG_AGO)
    assert (await run_pass(service))["running_lost"] == 0
    assert (await run_pass(service))["running_lost"] == 1

    [retry] = await harness.tap.wait(job, EventType.RETRY)
    assert retry.attempt == 1 and retry.data["error"]["type"] == "lease_lost"
    row = await harness.wait_status(job, "queued")
    assert (row["state_attempt"], row["attempts"]) == (2, 1)
    assert await harness.ready_ids() == [job]
    assert await harness.redis_attempt(job) == 2
    [attempt] = await harness.attempts(job)
    assert (attempt["attempt"], attempt["status"]) == (1, "failed")


async def test_a_running_job_a_worker_still_leases_is_left_alone(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=1.0)
    [job] = await _queued(harness, 1)
    await harness.dispatcher.pop(["q"], 1, 60_000, "busy-worker")
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="busy", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "running")
    await harness.pool.execute("UPDATE jobs SET updated_at = $2 WHERE id = $1", job, LONG_AGO)
    for _ in range(3):
        assert (await run_pass(service))["running_lost"] == 0
    assert (await harness.row(job))["status"] == "running"


async def test_a_blocked_job_whose_release_was_missed_is_released(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=1.0)
    done = await harness.insert(status="completed")
    failed = await harness.insert(status="failed")
    running = await harness.insert(status="running", state=(1, 2))
    released = await harness.insert(status="blocked", depends_on=[done], updated_at=LONG_AGO)
    doomed = await harness.insert(status="blocked", depends_on=[running, failed], updated_at=LONG_AGO)
    orphan = await harness.insert(status="blocked", depends_on=[done, uuid.uuid4()], updated_at=LONG_AGO)
    waiting = await harness.insert(status="blocked", depends_on=[done, running], updated_at=LONG_AGO)
    dependent = await harness.insert(status="blocked", depends_on=[doomed], updated_at=utcnow())
    counts = await run_pass(service)
    assert (counts["blocked_released"], counts["blocked_cancelled"], counts["dependency_cancelled"]) == (1, 2, 1)
    await harness.wait_status(released, "queued")
    await harness.wait_ready(released)
    for job in (doomed, orphan, dependent):
        row = await harness.wait_status(job, "cancelled")
        assert row["cancel_reason"] == "dependency_failed"
    row = await harness.row(waiting)
    assert (row["status"], row["updated_at"]) == ("blocked", LONG_AGO)  # not even touched


async def test_only_one_replica_reconciles_at_a_time(harness: Harness, database_url: str) -> None:
    service = await harness.start()
    assert service.reconciler is not None
    await run_pass(service)  # the periodic pass of the start is over
    other = await asyncpg.connect(database_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        assert await service.reconciler.run_pass() is None
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert await service.reconciler.run_pass() is not None
    finally:
        await other.close()


async def test_nothing_is_compared_while_the_consumer_lags(harness: Harness) -> None:
    service = await harness.start(reconcile_grace_s=0.3)
    jobs = await _queued(harness, 1)
    await harness.lose_redis_data()
    await _aged(harness, jobs[0])
    assert service.handler is not None
    service.handler.lag.seconds, service.handler.lag.observed_at = 30.0, time.monotonic()
    for _ in range(3):
        assert (await run_pass(service))["queued"] == 0
    service.handler.lag.seconds = 0.0
    await run_pass(service)
    assert (await run_pass(service))["queued"] == 1


def test_the_default_settings_rebuild_what_redis_lost_within_a_minute() -> None:
    # A row changed just before the loss is left alone for the grace, suspected on the next pass
    # and repaired on the one after: grace + two intervals, with room left for the passes themselves,
    # the promotion and the lease check.
    settings = SchedulerSettings()
    assert settings.reconcile_grace_s + 2 * settings.reconcile_interval_s <= 45
    assert settings.promote_interval_s <= 1 and settings.lease_check_interval_s <= 2
