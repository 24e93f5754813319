"""Worker events projected onto job rows and attempt rows: idempotent, stale events ignored."""

from __future__ import annotations

import uuid
from datetime import timedelta

from services.scheduler.service import SchedulerService
from shared.events import EventType, utcnow
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

ERR = {"type": "transient", "message": "flaky", "retryable": True}


async def _dispatched(harness: Harness, **fields: object) -> uuid.UUID:
    job = await harness.insert(**fields)
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    return job


async def test_started_and_completed_complete_the_row_with_its_attempt(harness: Harness) -> None:
    await harness.start()
    job = await _dispatched(harness)
    t0 = utcnow().replace(microsecond=0)
    t1 = t0 + timedelta(milliseconds=1500)
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=t0.isoformat()))
    row = await harness.wait_status(job, "running")
    assert (row["attempts"], row["started_at"], row["state_attempt"], row["state_rank"]) == (1, t0, 1, 2)

    await harness.publish(worker_event(
        EventType.COMPLETED, job, 1, result={"answer": 42}, workerId="w1", startedAt=t0.isoformat(),
        endedAt=t1.isoformat(), durationMs=1500,
    ))
    row = await harness.wait_status(job, "completed")
    assert (row["attempts"], row["started_at"], row["completed_at"]) == (1, t0, t1)
    assert row["result"] == {"answer": 42} and row["error"] is None
    [attempt] = await harness.attempts(job)
    assert (attempt["attempt"], attempt["status"], attempt["worker_id"]) == (1, "completed", "w1")
    assert (attempt["started_at"], attempt["ended_at"], attempt["error"]) == (t0, t1, None)


async def test_a_stale_started_after_completed_is_ignored(harness: Harness) -> None:
    service = await harness.start()
    job = await _dispatched(harness)
    t0 = utcnow().replace(microsecond=0)
    done = worker_event(EventType.COMPLETED, job, 1, result=1, workerId="w1", startedAt=t0.isoformat(),
                        endedAt=(t0 + timedelta(seconds=1)).isoformat())
    # Topics interleave: the completion may arrive before the start.
    late_start = worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=t0.isoformat())
    await harness.publish(done)
    completed = await harness.wait_status(job, "completed")
    marker = await harness.insert()
    await harness.publish(late_start, key=job)
    await harness.publish(await harness.submitted(marker), key=job)
    await harness.wait_status(marker, "queued")
    assert service.handler is not None
    await service.handler.handle([late_start, done, late_start])  # and redelivered, in any order

    row = await harness.row(job)
    assert row["status"] == "completed" and row["updated_at"] == completed["updated_at"]
    assert row["started_at"] == t0  # from the completion's own data
    [attempt] = await harness.attempts(job)
    assert attempt["status"] == "completed"


async def test_a_retry_then_a_second_attempt_gives_two_attempts_of_history(harness: Harness) -> None:
    await harness.start()
    job = await _dispatched(harness)
    t0 = utcnow().replace(microsecond=0)
    ts = [(t0 + timedelta(seconds=i)).isoformat() for i in range(6)]
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=ts[0]))
    await harness.publish(worker_event(
        EventType.RETRY, job, 1, error=ERR, nextRunAt=ts[2], delayMs=1000, workerId="w1", startedAt=ts[0],
        endedAt=ts[1],
    ))
    row = await harness.wait_status(job, "retrying")
    assert row["error"] == ERR and row["next_run_at"] == t0 + timedelta(seconds=2)

    await harness.publish(worker_event(EventType.STARTED, job, 2, workerId="w2", startedAt=ts[3]))
    await harness.publish(worker_event(
        EventType.COMPLETED, job, 2, result="ok", workerId="w2", startedAt=ts[3], endedAt=ts[4], durationMs=1000,
    ))
    row = await harness.wait_status(job, "completed")
    assert (row["attempts"], row["error"], row["next_run_at"], row["result"]) == (2, None, None, "ok")
    history = await harness.attempts(job)
    assert [(a["attempt"], a["status"], a["worker_id"]) for a in history] == [
        (1, "failed", "w1"), (2, "completed", "w2"),
    ]
    assert history[0]["error"] == ERR and history[0]["ended_at"] == t0 + timedelta(seconds=1)


async def test_a_permanent_failure_is_terminal_and_later_events_change_nothing(harness: Harness) -> None:
    service = await harness.start()
    job = await _dispatched(harness)
    now = utcnow().isoformat()
    perm = {"type": "permanent", "message": "no", "retryable": False}
    failed = worker_event(EventType.FAILED, job, 1, error=perm, reason="permanent", workerId="w1", startedAt=now,
                          endedAt=now)
    await harness.publish(failed)
    row = await harness.wait_status(job, "failed")
    assert row["error"] == perm and row["completed_at"] is not None and row["attempts"] == 1
    assert service.handler is not None
    await service.handler.handle([worker_event(EventType.STARTED, job, 2, workerId="w9", startedAt=now)])
    assert (await harness.row(job))["status"] == "failed"


async def test_progress_updates_only_the_progress(harness: Harness) -> None:
    service = await harness.start()
    job = await _dispatched(harness)
    assert service.handler is not None
    now = utcnow().isoformat()
    await service.handler.handle([worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=now)])
    await service.handler.handle([
        worker_event(EventType.PROGRESS, job, 1, progress={"percent": 30}, workerId="w1"),
        worker_event(EventType.PROGRESS, job, 1, progress={"percent": 70, "message": "almost"}, workerId="w1"),
    ])
    row = await harness.row(job)
    assert row["progress"] == {"percent": 70, "message": "almost"}
    assert (row["status"], row["state_attempt"], row["state_rank"]) == ("running", 1, 2)
    # progress of an attempt already superseded is dropped
    await service.handler.handle([worker_event(EventType.PROGRESS, job, 0, progress={"percent": 1})])
    assert (await harness.row(job))["progress"] == {"percent": 70, "message": "almost"}


async def test_a_worker_cancel_ends_the_running_attempt(harness: Harness) -> None:
    service = await harness.start()
    job = await _dispatched(harness)
    assert service.handler is not None
    now = utcnow().isoformat()
    await service.handler.handle([
        worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=now),
        worker_event(EventType.CANCELLED, job, 1, reason="cancelled_by_user", by="worker"),
    ])
    row = await harness.row(job)
    assert (row["status"], row["cancel_reason"]) == ("cancelled", "cancelled_by_user")
    assert row["completed_at"] is not None
    assert [(a["attempt"], a["status"]) for a in await harness.attempts(job)] == [(1, "cancelled")]


async def test_events_for_unknown_jobs_are_skipped_without_blocking_the_batch(harness: Harness) -> None:
    service: SchedulerService = await harness.start()
    job = await _dispatched(harness)
    ghost = uuid.uuid4()
    now = utcnow().isoformat()
    assert service.handler is not None
    await service.handler.handle([
        worker_event(EventType.STARTED, ghost, 1, workerId="w1", startedAt=now),
        worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=now),
    ])
    assert (await harness.row(job))["status"] == "running"
    assert await harness.attempts(ghost) == []


async def test_an_event_postgres_refuses_is_skipped_and_the_rest_of_its_batch_applied(harness: Harness) -> None:
    service = await harness.start()
    good = await _dispatched(harness)
    bad = await _dispatched(harness)
    now = utcnow().isoformat()
    assert service.handler is not None
    await service.handler.handle([
        # jsonb cannot store a NUL character: this event can never be written.
        worker_event(EventType.COMPLETED, bad, 1, result={"text": "nul\u0000"}, startedAt=now, endedAt=now),
        worker_event(EventType.STARTED, good, 1, workerId="w1", startedAt=now),
    ])
    assert (await harness.row(good))["status"] == "running"
    assert (await harness.row(bad))["status"] == "queued"
