"""Execution semantics of issue 9 against real servers: lease fencing of a stopped worker, cancel
latency, retry defaults by job type and by queue, Retry-After, checkpoints, logs and progress."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from fastapi import FastAPI, Response

from deploy.local.servers import free_port
from shared.dispatch.config import DispatchConfig
from shared.dispatch.protocol import Dispatcher, JobRef, now_ms
from shared.dispatch.records import Taken
from shared.events import Envelope, EventType
from shared.http_server import HttpServer
from shared.models import JobSpec, RetryPolicy
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import JobEventTap
from tests.integration.worker.conftest import WorkerSettingsFactory
from tests.integration.worker.support import due_ms, job, running_worker, spawn_worker
from tests.integration.worker.test_shutdown import wait_ready

S, C, R, X, P = EventType.STARTED, EventType.COMPLETED, EventType.RETRY, EventType.CANCELLED, EventType.PROGRESS
CUSTOM = "tests.integration.worker.custom_handlers"


def late_results(tap: JobEventTap, spec: JobSpec) -> list[Envelope]:
    return [e for e in tap.of(spec.job_id, P) if "lateResult" in e.data]


async def test_a_worker_stopped_past_its_lease_reports_its_result_as_rejected_never_applies_it(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap, tmp_path: Path
) -> None:
    settings = worker_settings(worker_id="w-stopped", lease_ms=1500, queue_refresh_interval_s=1.0)
    log = tmp_path / "worker.log"
    proc = await spawn_worker(settings, log)
    spec = job("sleep", {"ms": 2500})
    try:
        await wait_ready(settings.worker_port, proc, log)
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: (S, 1) in event_tap.kinds(spec.job_id))
        proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await poll_until(lambda: dispatcher.expired(["q"]), timeout_s=10, every_s=0.1)
        # The scheduler records the lost attempt, then pushes the next one, replacing the dead lease.
        assert await dispatcher.push([(spec.model_copy(update={"attempt": 2}), now_ms())]) == [True]
        await dispatcher.promote_due()
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - stopped)))  # the handler's sleep is over
        proc.send_signal(signal.SIGCONT)
        await event_tap.wait_for(lambda: bool(late_results(event_tap, spec)) and (C, 2) in event_tap.kinds(spec.job_id))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
    # Attempt 1 never completed, failed or retried: its result went out as a rejected record only.
    assert event_tap.kinds(spec.job_id) == [(S, 1), (S, 2), (C, 2)], log.read_text()
    [late] = late_results(event_tap, spec)
    assert late.attempt == 1
    record = late.data["lateResult"]
    assert record["outcome"] in {"completed", "abandoned"} and record["rejected"] is True
    assert (record["reason"], record["workerId"]) == ("lease_lost", "w-stopped")


async def test_a_worker_frozen_between_its_pop_and_the_start_cannot_complete_the_job(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The freeze lands after Redis answered the pop and before the executor holds the lease: no
    # heartbeat covers it there. The lease must count from the pop, not from when the jobs start.
    settings = worker_settings(worker_id="w-frozen", lease_ms=1000)
    spec = job("noop")
    take = Dispatcher.take
    frozen, thawed = asyncio.Event(), asyncio.Event()

    async def take_then_freeze(self: Dispatcher, queues: Sequence[str], count: int, lease_ms: int,
                               token_base: str) -> Taken:
        taken = await take(self, queues, count, lease_ms, token_base)
        if token_base.startswith("w-frozen:") and taken.leases and not frozen.is_set():
            frozen.set()
            await thawed.wait()
        return taken

    monkeypatch.setattr(Dispatcher, "take", take_then_freeze)
    async with running_worker(settings):
        await dispatcher.push([(spec, 0)])
        await asyncio.wait_for(frozen.wait(), timeout=10)
        # As the scheduler does with a lease that expired before its attempt started: release it
        # (fenced by its token) and hand the job out again at the same attempt, to another worker.
        expired = await poll_until(lambda: dispatcher.expired(["q"]), timeout_s=10, every_s=0.05)
        assert await dispatcher.release_each([x.lease for x in expired]) == [True]
        await dispatcher.push([(spec, 0)])
        other = await take(dispatcher, ["q"], 1, 30_000, "w-other:1")
        assert [lease.job_id for lease in other.leases] == [spec.job_id]
        thawed.set()
        await event_tap.wait_for(lambda: bool(late_results(event_tap, spec)))
    assert (C, 1) not in event_tap.kinds(spec.job_id)
    [record] = [e.data["lateResult"] for e in late_results(event_tap, spec)]
    assert (record["outcome"], record["rejected"], record["reason"]) == ("completed", True, "lease_lost")


@pytest.mark.parametrize("run", range(3))
async def test_cancel_reaches_a_running_handler_within_a_second(
    run: int, worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap,
    tmp_path: Path,
) -> None:
    seen = tmp_path / "cancelled-at"
    spec = job("custom.cancel-probe", {"path": str(seen)})
    async with running_worker(worker_settings(worker_handler_modules=CUSTOM)):
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: (S, 1) in event_tap.kinds(spec.job_id))
        await asyncio.sleep(0.3 + 0.1 * run)  # anywhere within the poll period
        flagged = time.time()
        assert await dispatcher.cancel("q", spec.job_id) == "running"

        async def noticed() -> bool:
            return seen.exists()

        await poll_until(noticed, timeout_s=5, every_s=0.02)
        latency = float(seen.read_text()) - flagged
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (X, 1)]
        await poll_until(lambda: dispatcher.held([JobRef.of(spec)]), lambda held: held == set(), timeout_s=5)
    print(f"cancel reached the handler in {latency * 1000:.0f} ms")
    assert 0 <= latency < 1.0


async def _first_retry(tap: JobEventTap, spec: JobSpec) -> Envelope:
    [retry] = await tap.wait(spec.job_id, R)
    return retry


async def test_retry_delay_comes_from_the_job_then_its_type_then_its_queue(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    fixed = RetryPolicy(strategy="fixed", base_delay_ms=555, jitter=False)
    await dispatcher.configure("rq", DispatchConfig(retry_json=fixed.model_dump_json(by_alias=True)))
    own = job("custom.flaky", queue="rq", retry=RetryPolicy(strategy="fixed", base_delay_ms=77, jitter=False))
    by_type = job("custom.flaky", queue="rq", retry=None)
    by_queue = job("fail", {"mode": "transient"}, queue="rq", retry=None)
    plain = job("fail", {"mode": "transient"}, queue="other", retry=None)
    async with running_worker(worker_settings(worker_handler_modules=CUSTOM)):
        await dispatcher.push([(s, 0) for s in (own, by_type, by_queue, plain)])
        delays = [(await _first_retry(event_tap, s)).data["delayMs"] for s in (own, by_type, by_queue, plain)]
    assert delays[:3] == [77, 1234, 555]
    assert 0 <= delays[3] <= RetryPolicy().base_delay_ms  # RetryPolicy(): full jitter over 1 s


async def test_the_worker_setting_wins_over_the_handler_default(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("custom.flaky", retry=None)
    setting = {"custom.flaky": {"strategy": "linear", "baseDelayMs": 4321, "jitter": False}}
    async with running_worker(worker_settings(worker_handler_modules=CUSTOM, worker_retry_defaults=setting)):
        await dispatcher.push([(spec, 0)])
        retry = await _first_retry(event_tap, spec)
    assert retry.data["delayMs"] == 4321


@pytest.fixture
async def throttling() -> AsyncIterator[str]:
    """A client service answering 429 with Retry-After in seconds (/seconds) or as an HTTP date (/date)."""
    app = FastAPI()

    @app.get("/seconds")
    async def seconds() -> Response:
        return Response("slow down", status_code=429, headers={"Retry-After": "3"})

    @app.get("/date")
    async def date() -> Response:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=8), usegmt=True)
        return Response("maintenance", status_code=503, headers={"Retry-After": when})

    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def test_http_honours_retry_after_in_seconds_and_as_a_date(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap, throttling: str
) -> None:
    policy = RetryPolicy(base_delay_ms=10, max_delay_ms=60_000)
    by_seconds = job("http", {"url": f"{throttling}/seconds"}, retry=policy)
    by_date = job("http", {"url": f"{throttling}/date"}, retry=policy)
    capped = job("http", {"url": f"{throttling}/date"}, retry=RetryPolicy(max_delay_ms=2000))
    async with running_worker(worker_settings()):
        await dispatcher.push([(s, 0) for s in (by_seconds, by_date, capped)])
        seconds, date, cap = [await _first_retry(event_tap, s) for s in (by_seconds, by_date, capped)]
    assert seconds.data["delayMs"] == 3000 and seconds.data["error"]["type"] == "http_429"
    assert 6000 <= date.data["delayMs"] <= 8000 and date.data["error"]["type"] == "http_503"
    assert cap.data["delayMs"] == 2000  # Retry-After wins over the backoff, never over maxDelayMs


async def test_a_retried_attempt_resumes_from_the_last_checkpoint(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("custom.resumable", {"total": 10, "failAt": 6}, max_attempts=2)
    async with running_worker(worker_settings(worker_handler_modules=CUSTOM)):
        await dispatcher.push([(spec, 0)])
        retry = await _first_retry(event_tap, spec)
        # As the scheduler does once it projected the retry: the next attempt carries the checkpoint.
        assert retry.data["checkpoint"] == {"done": 6}
        nxt = spec.model_copy(update={"attempt": 2, "checkpoint_state": retry.data["checkpoint"]})
        await dispatcher.push([(nxt, due_ms(retry))])
        await poll_until(lambda: dispatcher.promote_due(), timeout_s=5, every_s=0.05)
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (R, 1), (S, 2), (C, 2)]
        reports = [e.data for e in event_tap.of(spec.job_id, P)]
    [done] = event_tap.of(spec.job_id, C)
    assert done.data["result"] == {"resumedAt": 6, "attempt": 2}  # steps 1-6 were not run again
    lines = [line["message"] for r in reports for line in r.get("logs", [])]
    assert "attempt 1 starts at step 0" in lines and "attempt 2 starts at step 6" in lines
    assert "all steps done" in lines  # the last lines go out before the outcome
    progress = [r["progress"] for r in reports if "progress" in r]
    assert progress and progress[-1]["stage"] == "counting" and progress[-1]["total"] == 10
    assert all(0 <= p["percent"] <= 100 for p in progress)
    assert {"done": 10} in [r.get("checkpoint") for r in reports]
