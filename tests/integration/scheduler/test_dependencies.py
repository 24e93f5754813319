"""Dependencies: dependents wait blocked, run when every dependency completed, cancel down the chain."""

from __future__ import annotations

from shared.events import EventType, utcnow
from tests.fixtures.polling import eventually
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

NOW = utcnow().isoformat()


async def test_a_dependent_waits_blocked_and_runs_once_its_dependencies_completed(harness: Harness) -> None:
    await harness.start()
    a = await harness.insert()
    b = await harness.insert()
    c = await harness.insert(depends_on=[a, b], priority=9)
    await harness.submit(a, b, c)
    await harness.wait_status(a, "queued")
    await harness.wait_status(b, "queued")
    row = await harness.wait_status(c, "blocked")
    assert row["state_attempt"] == 0 and c not in await harness.ready_ids()

    await harness.publish(worker_event(EventType.COMPLETED, a, 1, result=None, startedAt=NOW, endedAt=NOW))
    await harness.wait_status(a, "completed")
    assert (await harness.row(c))["status"] == "blocked"  # b is still queued

    await harness.publish(worker_event(EventType.COMPLETED, b, 1, result=None, startedAt=NOW, endedAt=NOW))
    row = await harness.wait_status(c, "queued")
    assert (row["state_attempt"], row["state_rank"]) == (1, 1)
    await harness.wait_ready(a, b, c)  # nobody popped a and b
    [dispatched] = await harness.tap.wait(c, EventType.DISPATCHED)
    assert dispatched.attempt == 1 and dispatched.data["priority"] == 9


async def test_a_submission_whose_dependencies_already_completed_is_queued_at_once(harness: Harness) -> None:
    await harness.start()
    a = await harness.insert(status="completed")
    b = await harness.insert(depends_on=[a])
    await harness.submit(b)
    await harness.wait_status(b, "queued")


async def test_a_failed_dependency_cancels_the_whole_chain(harness: Harness) -> None:
    await harness.start()
    a = await harness.insert()
    b = await harness.insert(depends_on=[a])
    c = await harness.insert(depends_on=[b])
    other = await harness.insert()
    d = await harness.insert(depends_on=[other])  # not part of the chain
    await harness.submit(a, b, c, other, d)
    for job in (b, c, d):
        await harness.wait_status(job, "blocked")

    err = {"type": "permanent", "message": "no", "retryable": False}
    await harness.publish(worker_event(EventType.FAILED, a, 1, error=err, reason="permanent", startedAt=NOW,
                                       endedAt=NOW))
    for job in (b, c):
        row = await harness.wait_status(job, "cancelled")
        assert row["cancel_reason"] == "dependency_failed" and row["completed_at"] is not None
        [event] = await harness.tap.wait(job, EventType.CANCELLED)
        assert event.data == {"reason": "dependency_failed", "by": "scheduler"} and event.tenant == "acme"
    assert (await harness.row(d))["status"] == "blocked"
    # The scheduler reads its own cancelled events back: they change nothing.
    before = await harness.row(c)
    marker = await harness.insert()
    await harness.publish(await harness.submitted(marker), key=c)
    await harness.wait_status(marker, "queued")
    assert (await harness.row(c))["updated_at"] == before["updated_at"]


async def test_a_dependency_cancelled_by_the_api_cancels_its_dependents(harness: Harness) -> None:
    await harness.start()
    a = await harness.insert()
    b = await harness.insert(depends_on=[a])
    await harness.submit(a, b)
    await harness.wait_status(b, "blocked")
    # The API cancels a waiting job in its own transaction, then announces it.
    await harness.pool.execute("UPDATE jobs SET status = 'cancelled', state_rank = 5 WHERE id = $1", a)
    await harness.publish(worker_event(EventType.CANCELLED, a, 1, reason="cancelled_by_user", by="api"))
    row = await harness.wait_status(b, "cancelled")
    assert row["cancel_reason"] == "dependency_failed"


async def test_a_submission_whose_dependency_already_failed_is_cancelled(harness: Harness) -> None:
    await harness.start()
    a = await harness.insert(status="failed")
    b = await harness.insert(depends_on=[a])
    await harness.submit(b)
    await harness.wait_status(b, "cancelled")
    await eventually(lambda: _kinds(harness, b), lambda kinds: kinds == [EventType.CANCELLED], timeout_s=15)


def _kinds(harness: Harness, job: object) -> list[EventType]:
    return [e.type for e in harness.tap.events if e.job_id == job and e.type is not EventType.SUBMITTED]
