"""Jobs pushed straight into Redis, run by an in-process worker, observed on Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx

from shared.dispatch.protocol import Dispatcher, JobRef
from shared.events import EventType
from shared.models import JobSpec
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import JobEventTap
from tests.integration.worker.conftest import WorkerSettingsFactory
from tests.integration.worker.support import job, running_worker, scheduling

S, P, C, R, F = EventType.STARTED, EventType.PROGRESS, EventType.COMPLETED, EventType.RETRY, EventType.FAILED


async def wait_released(dispatcher: Dispatcher, spec: JobSpec) -> None:
    """Until Redis forgot the job: no lease, no copy (the release follows Kafka's acknowledgement)."""

    async def released() -> bool:
        ref = JobRef.of(spec)
        return await dispatcher.leased([ref]) == set() and await dispatcher.held([ref]) == set()

    await poll_until(released, timeout_s=5)


async def test_noop_emits_started_then_completed_and_releases_the_lease(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    settings = worker_settings()
    spec = job("noop", {"x": 1}, tenant="acme")
    async with running_worker(settings):
        await dispatcher.push([(spec, 0)])
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (C, 1)]
        started, completed = event_tap.of(spec.job_id)
        for e in (started, completed):
            assert (e.job_id, e.queue, e.job_type, e.attempt, e.schema_version) == (spec.job_id, "q", "noop", 1, 1)
            assert e.tenant == "acme"
        assert started.data["workerId"] == settings.worker_id
        assert set(started.data) == {"workerId", "startedAt"}
        assert completed.data["result"] == {}
        assert set(completed.data) == {"result", "workerId", "startedAt", "endedAt", "durationMs"}
        assert completed.data["startedAt"] == started.data["startedAt"]
        assert completed.data["durationMs"] >= 0
        assert dict(event_tap.headers[spec.job_id])["tenant"] == b"acme"
        await wait_released(dispatcher, spec)


async def test_echo_and_a_custom_handler_module(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    settings = worker_settings(worker_handler_modules="tests.integration.worker.custom_handlers")
    echo = job("echo", {"nested": {"a": [1, 2, 3]}, "s": "é"})
    custom = job("custom.reverse", {"text": "conveyor"})
    async with running_worker(settings):
        await dispatcher.push([(echo, 0), (custom, 0)])
        await event_tap.wait_terminal(echo.job_id)
        await event_tap.wait_terminal(custom.job_id)
    assert event_tap.of(echo.job_id)[-1].data["result"] == echo.payload
    assert event_tap.of(custom.job_id)[-1].data["result"] == {"reversed": "royevnoc", "worker": settings.worker_id}


async def test_transient_failures_retry_then_succeed(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("fail", {"mode": "transient", "failTimes": 2, "message": "flaky"}, max_attempts=5)
    async with running_worker(worker_settings()), scheduling(dispatcher, event_tap, spec):
        await dispatcher.push([(spec, 0)])
        kinds = await event_tap.wait_terminal(spec.job_id)
    assert kinds == [(S, 1), (R, 1), (S, 2), (R, 2), (S, 3), (C, 3)]
    retry = next(e for e in event_tap.of(spec.job_id) if e.type is R)
    assert retry.data["error"] == {"type": "transient", "message": "flaky", "retryable": True}
    assert retry.data["delayMs"] == 10  # baseDelayMs 10, no jitter, first failure
    assert set(retry.data) == {"error", "nextRunAt", "delayMs", "workerId", "startedAt", "endedAt"}
    await wait_released(dispatcher, spec)


async def test_permanent_failure_fails_at_once(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("fail", {"mode": "permanent", "message": "bad input"}, max_attempts=5)
    async with running_worker(worker_settings()), scheduling(dispatcher, event_tap, spec):
        await dispatcher.push([(spec, 0)])
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (F, 1)]
        await asyncio.sleep(0.3)  # the behaviour under test: no retry sneaks in afterwards
    failed = event_tap.of(spec.job_id)[-1]
    assert failed.data["reason"] == "permanent"
    assert failed.data["error"] == {"type": "permanent", "message": "bad input", "retryable": False}
    assert set(failed.data) == {"error", "workerId", "startedAt", "endedAt", "reason"}
    assert event_tap.kinds(spec.job_id) == [(S, 1), (F, 1)]
    await wait_released(dispatcher, spec)


async def test_retries_exhausted(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("fail", {"mode": "transient"}, max_attempts=3)
    async with running_worker(worker_settings()), scheduling(dispatcher, event_tap, spec):
        await dispatcher.push([(spec, 0)])
        kinds = await event_tap.wait_terminal(spec.job_id)
    assert kinds == [(S, 1), (R, 1), (S, 2), (R, 2), (S, 3), (F, 3)]
    assert event_tap.of(spec.job_id)[-1].data["reason"] == "exhausted"
    await wait_released(dispatcher, spec)


async def test_unknown_job_type_fails_permanently(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("no.such.type", max_attempts=5)
    async with running_worker(worker_settings()):
        await dispatcher.push([(spec, 0)])
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (F, 1)]
    failed = event_tap.of(spec.job_id)[-1]
    assert failed.data["reason"] == "unknown_job_type"
    assert failed.data["error"]["type"] == "unknown_job_type" and failed.data["error"]["retryable"] is False


async def test_timeout_retries_with_type_timeout(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("sleep", {"ms": 10_000}, timeout_ms=200, max_attempts=2)
    began = time.monotonic()
    async with running_worker(worker_settings()), scheduling(dispatcher, event_tap, spec):
        await dispatcher.push([(spec, 0)])
        kinds = await event_tap.wait_terminal(spec.job_id)
    assert kinds == [(S, 1), (R, 1), (S, 2), (F, 2)]
    assert time.monotonic() - began < 8  # the sleeps were cut short
    retry = next(e for e in event_tap.of(spec.job_id) if e.type is R)
    assert retry.data["error"]["type"] == "timeout" and retry.data["error"]["retryable"] is True
    assert event_tap.of(spec.job_id)[-1].data["reason"] == "exhausted"


async def test_sleep_reports_progress_between_started_and_completed(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("sleep", {"ms": 1500})
    async with running_worker(worker_settings()):
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_terminal(spec.job_id)
    events = event_tap.of(spec.job_id)
    assert [e.type for e in events] == [S, P, P, C]
    assert [round(e.data["progress"]["percent"]) for e in events if e.type is P] == [33, 67]
    assert events[-1].data["result"] == {"sleptMs": 1500}
    assert all(e.data["workerId"] for e in events)


async def test_a_brand_new_queue_is_served_at_once(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    # The queue list refreshes only every 60 s here: the wake signal must trigger the refresh.
    async with running_worker(worker_settings(worker_queues="")) as worker:
        first = job("noop", queue="first")
        await dispatcher.push([(first, 0)])
        await event_tap.wait_terminal(first.job_id)
        # The behaviour under test, not a wait: a worker idle for over one wake period (1 s),
        # blocked waiting for work.
        await asyncio.sleep(1.2)
        fresh = job("noop", queue=f"fresh-{uuid.uuid4().hex[:6]}")
        pushed = datetime.now(UTC)
        await dispatcher.push([(fresh, 0)])
        await event_tap.wait_terminal(fresh.job_id)
        started_at = datetime.fromisoformat(event_tap.of(fresh.job_id)[0].data["startedAt"])
        # Well under the 1 s wake timeout: the wake itself made the worker look for new queues.
        assert (started_at - pushed).total_seconds() < 0.5
        assert worker._fetcher is not None and fresh.queue in worker._fetcher.serving


async def test_configured_queues_only(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    mine, other = job("noop", queue="mine"), job("noop", queue="other")
    async with running_worker(worker_settings(worker_queues="mine, spare")):
        await dispatcher.push([(other, 0), (mine, 0)])
        await event_tap.wait_terminal(mine.job_id)
        await asyncio.sleep(0.3)  # the behaviour under test: the other queue stays untouched meanwhile
    assert event_tap.of(other.job_id) == []
    assert await dispatcher.depth("other") == 1


async def test_concurrency_limit_and_a_burst(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    sleepers = [job("sleep", {"ms": 400}) for _ in range(6)]
    noops = [job("noop", queue="burst") for _ in range(300)]
    async with running_worker(worker_settings(worker_concurrency=3)) as worker:
        began = time.monotonic()
        await dispatcher.push([(s, 0) for s in sleepers])
        executor = worker.executor
        assert executor is not None

        async def three_taken() -> bool:
            return len(executor.job_ids()) >= 3

        await poll_until(three_taken, timeout_s=5)
        assert len(executor.job_ids()) == 3  # not the six pushed
        for s in sleepers:
            await event_tap.wait_terminal(s.job_id)
        assert time.monotonic() - began >= 0.8  # two rounds of three
        await dispatcher.push([(n, 0) for n in noops])
        done = {n.job_id for n in noops}
        await event_tap.wait_for(lambda: done <= {e.job_id for e in event_tap.events if e.type is C}, 30)
    assert await dispatcher.held([JobRef.of(n) for n in noops]) == set()


async def test_health_and_readiness(worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher) -> None:
    settings = worker_settings()
    async with running_worker(settings), httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.worker_port}") as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        metrics = (await c.get("/metrics")).text
        assert "conveyor_worker_jobs_processed_total" in metrics and "conveyor_worker_in_flight_jobs" in metrics
