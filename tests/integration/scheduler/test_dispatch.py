"""Submissions: pending rows become queued (Redis ready set + `dispatched`), scheduled, or stay put."""

from __future__ import annotations

from datetime import timedelta

from services.scheduler.rows import to_ms
from shared.dispatch.config import DispatchConfig
from shared.dispatch.protocol import Lease
from shared.events import EventType, utcnow
from tests.fixtures.polling import poll_until
from tests.integration.scheduler.conftest import Harness


async def test_a_submitted_pending_row_is_queued_pushed_and_announced(harness: Harness) -> None:
    await harness.start()
    job = await harness.insert(priority=8, payload={"hello": "world"}, timeout_ms=5000, max_attempts=4)
    await harness.submit(job)

    row = await harness.wait_status(job, "queued")
    assert (row["state_attempt"], row["state_rank"], row["attempts"]) == (1, 1, 0)
    assert await harness.wait_ready(job) == [job]
    [lease] = await harness.dispatcher.pop(["q"], 10, 5000, "test")
    spec = lease.spec
    assert (spec.job_id, spec.tenant, spec.attempt, spec.priority, spec.max_attempts) == (job, "acme", 1, 8, 4)
    assert (spec.payload, spec.timeout_ms, spec.retry.base_delay_ms) == ({"hello": "world"}, 5000, 10)
    assert spec.submitted_at_ms == to_ms(row["created_at"])

    [dispatched] = await harness.tap.wait(job, EventType.DISPATCHED)
    assert (dispatched.attempt, dispatched.data["priority"], dispatched.tenant) == (1, 8, "acme")
    assert dispatched.queue == "q" and dispatched.job_type == "noop"


async def test_a_redelivered_submission_doubles_nothing(harness: Harness) -> None:
    service = await harness.start()
    job = await harness.insert()
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    before = await harness.row(job)

    # Redelivery through Kafka; a marker on the same partition proves it was handled.
    marker = await harness.insert()
    duplicate = await harness.submitted(job)
    await harness.publish(duplicate, key=job)
    await harness.publish(await harness.submitted(marker), key=job)
    await harness.wait_status(marker, "queued")
    # ... and straight into the handler, twice more.
    assert service.handler is not None
    await service.handler.handle([duplicate, duplicate])

    after = await harness.row(job)
    assert (after["status"], after["state_attempt"], after["updated_at"]) == ("queued", 1, before["updated_at"])
    await harness.wait_ready(job, marker)
    await harness.tap.wait(marker, EventType.DISPATCHED)
    assert len(harness.tap.of(job, EventType.DISPATCHED)) == 1


async def test_a_delayed_job_is_scheduled_then_promoted_when_due(harness: Harness) -> None:
    await harness.start()
    run_at = utcnow() + timedelta(seconds=2)
    job = await harness.insert(scheduled_for=run_at)
    await harness.submit(job)

    row = await harness.wait_status(job, "scheduled")
    assert row["state_attempt"] == 0
    score = await harness.redis.zscore(harness.dispatcher.keys.queue("q").delayed, str(job))
    assert score == to_ms(run_at)
    assert await harness.ready_ids() == []
    assert harness.tap.of(job, EventType.DISPATCHED) == []

    row = await harness.wait_status(job, "queued", timeout_s=10)
    assert utcnow() >= run_at
    assert (row["state_attempt"], row["state_rank"]) == (1, 1)
    assert await harness.ready_ids() == [job]
    [dispatched] = await harness.tap.wait(job, EventType.DISPATCHED)
    assert dispatched.attempt == 1


async def test_a_row_cancelled_before_its_submission_arrives_is_left_alone(harness: Harness) -> None:
    await harness.start()
    cancelled = await harness.insert(status="cancelled")
    marker = await harness.insert()
    await harness.publish(await harness.submitted(cancelled), await harness.submitted(marker), key=cancelled)
    await harness.wait_status(marker, "queued")
    assert (await harness.row(cancelled))["status"] == "cancelled"
    await harness.wait_ready(marker)


async def test_a_burst_of_submissions_is_dispatched_in_priority_order(harness: Harness) -> None:
    await harness.start()
    jobs = [await harness.insert(priority=i % 11) for i in range(300)]
    await harness.submit(*jobs)
    await poll_until(harness.status_counts, lambda counts: counts == {"queued": 300}, timeout_s=15)
    ready = await harness.wait_ready(*jobs)
    priorities = {j: i % 11 for i, j in enumerate(jobs)}
    assert [priorities[j] for j in ready] == sorted(priorities.values(), reverse=True)


async def test_a_jobs_scheduling_keys_reach_redis_and_its_limits(harness: Harness) -> None:
    await harness.start()
    await harness.dispatcher.configure("q", DispatchConfig(key_concurrency=1))
    first, second = await harness.insert(), await harness.insert()
    for job in (first, second):
        await harness.pool.execute(
            "UPDATE jobs SET rate_limit_key = 'r', concurrency_key = 'c', fairness_key = 'f' WHERE id = $1", job
        )
        await harness.submit(job)
        await harness.wait_status(job, "queued")

    async def popped() -> list[Lease]:
        return await harness.dispatcher.pop(["q"], 10, 5000, "test")

    [lease] = await poll_until(popped, lambda leases: len(leases) == 1, timeout_s=15)
    spec = lease.spec
    assert (spec.rate_limit_key, spec.concurrency_key, spec.fairness_key) == ("r", "c", "f")
    assert await harness.dispatcher.pop(["q"], 10, 5000, "test") == []  # key "c" runs one at a time
    await harness.dispatcher.release([lease])
    [after] = await harness.dispatcher.pop(["q"], 10, 5000, "test")
    assert {lease.job_id, after.job_id} == {first, second}
