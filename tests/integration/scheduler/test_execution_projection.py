"""Projection of the execution records (issue 9): late results fenced out and recorded on the attempt,
handler logs, checkpoints that reach the next attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson

from services.scheduler.leases import LEASE_EXPIRED
from shared.events import EventType, utcnow
from tests.integration.scheduler.conftest import Harness
from tests.integration.scheduler.support import worker_event

ERR = {"type": "transient", "message": "flaky", "retryable": True}


async def _running(harness: Harness) -> uuid.UUID:
    job = await harness.insert()
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    await harness.publish(worker_event(EventType.STARTED, job, 1, workerId="w1", startedAt=utcnow().isoformat()))
    await harness.wait_status(job, "running")
    return job


async def test_a_result_after_the_attempt_was_recorded_lost_is_rejected_and_recorded(harness: Harness) -> None:
    service = await harness.start()
    assert service.handler is not None
    job = await _running(harness)
    t0 = utcnow()
    lost = worker_event(
        EventType.RETRY, job, 1, error=LEASE_EXPIRED, workerId=None, nextRunAt=t0.isoformat(), delayMs=0,
        startedAt=t0.isoformat(), endedAt=t0.isoformat(),
    )
    await service.handler.handle([lost])
    assert (await harness.row(job))["status"] == "retrying"
    late_at = t0 + timedelta(seconds=5)
    late = worker_event(
        EventType.COMPLETED, job, 1, result={"late": True}, workerId="w1", startedAt=t0.isoformat(),
        endedAt=late_at.isoformat(), durationMs=5000,
    )
    await service.handler.handle([late, lost])  # the scheduler's own event redelivered beside it
    row = await harness.row(job)
    assert row["status"] in ("retrying", "queued") and row["result"] is None  # never applied
    [attempt] = [a for a in await harness.attempts(job) if a["attempt"] == 1]
    assert attempt["status"] == "failed" and attempt["error"] == LEASE_EXPIRED
    assert attempt["outcome_event"] == lost.event_id
    assert attempt["late_result"] == {
        "outcome": "completed", "at": late_at.isoformat(), "workerId": "w1", "rejected": True,
        "reason": "attempt_already_ended",
    }


async def test_redelivered_outcomes_are_not_late(harness: Harness) -> None:
    service = await harness.start()
    assert service.handler is not None
    job = await _running(harness)
    now = utcnow().isoformat()
    done = worker_event(EventType.COMPLETED, job, 1, result=1, workerId="w1", startedAt=now, endedAt=now)
    await service.handler.handle([done, done])
    await service.handler.handle([done])
    [attempt] = await harness.attempts(job)
    assert (attempt["status"], attempt["outcome_event"], attempt["late_result"]) == ("completed", done.event_id, None)


async def test_a_late_result_its_worker_reports_is_recorded_on_the_attempt(harness: Harness) -> None:
    service = await harness.start()
    assert service.handler is not None
    job = await _running(harness)
    report = {"outcome": "completed", "at": utcnow().isoformat(), "workerId": "w1", "rejected": True,
              "reason": "lease_lost"}
    await service.handler.handle([worker_event(EventType.PROGRESS, job, 1, lateResult=report, workerId="w1")])
    row = await harness.row(job)
    assert (row["status"], row["progress"]) == ("running", None)  # a record, nothing moved
    [attempt] = await harness.attempts(job)
    assert attempt["late_result"] == report


async def test_logs_are_kept_newest_200_with_their_attempt_even_after_the_end(harness: Harness) -> None:
    service = await harness.start()
    assert service.handler is not None
    job = await _running(harness)
    at = utcnow().isoformat()
    lines = [{"at": at, "attempt": 1, "message": f"line {n}"} for n in range(150)]
    await service.handler.handle([
        worker_event(EventType.PROGRESS, job, 1, progress={"percent": 10}, workerId="w1"),
        worker_event(EventType.PROGRESS, job, 1, logs=lines[:100], workerId="w1"),
    ])
    row = await harness.row(job)
    assert row["progress"] == {"percent": 10}  # a log-only report leaves the progress alone
    await service.handler.handle([
        worker_event(EventType.COMPLETED, job, 1, result=1, workerId="w1", startedAt=at, endedAt=at),
    ])
    more = [{"at": at, "attempt": 1, "message": f"more {n}"} for n in range(150)]
    await service.handler.handle([worker_event(EventType.PROGRESS, job, 1, logs=lines[100:] + more, workerId="w1")])
    logs = (await harness.row(job))["logs"]
    assert len(logs) == 200
    assert [x["message"] for x in logs] == [f"line {n}" for n in range(100, 150)] + [f"more {n}" for n in range(150)]
    assert {x["attempt"] for x in logs} == {1}


async def test_the_checkpoint_reaches_the_next_attempt_and_stale_ones_are_ignored(harness: Harness) -> None:
    service = await harness.start()
    assert service.handler is not None
    job = await _running(harness)
    now = utcnow()
    await service.handler.handle([worker_event(EventType.PROGRESS, job, 1, checkpoint={"page": 1}, workerId="w1")])
    assert (await harness.row(job))["checkpoint"] == {"page": 1}
    await service.handler.handle([worker_event(
        EventType.RETRY, job, 1, error=ERR, nextRunAt=(now + timedelta(seconds=60)).isoformat(), delayMs=60_000,
        workerId="w1", startedAt=now.isoformat(), endedAt=now.isoformat(), checkpoint={"page": 7},
    )])
    row = await harness.row(job)
    assert (row["status"], row["checkpoint"]) == ("retrying", {"page": 7})
    raw = await harness.redis.hget(harness.dispatcher.keys.queue("q").specs, str(job))
    assert raw is not None and orjson.loads(raw)["checkpointState"] == {"page": 7}
    # The attempt's own progress report arriving after its retry (another topic) changes nothing.
    await service.handler.handle([worker_event(EventType.PROGRESS, job, 1, checkpoint={"page": 6}, workerId="w1")])
    assert (await harness.row(job))["checkpoint"] == {"page": 7}
