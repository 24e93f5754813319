"""Stopping a worker: SIGTERM drains, a drain timeout hands jobs back, SIGKILL leaves the lease to expire."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from shared.dispatch.protocol import Dispatcher, JobRef, now_ms
from shared.events import EventType
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import JobEventTap
from tests.integration.worker.conftest import WorkerSettingsFactory
from tests.integration.worker.support import due_ms, job, next_attempt_of, running_worker, spawn_worker

S, C, R = EventType.STARTED, EventType.COMPLETED, EventType.RETRY


async def wait_ready(port: int, proc: asyncio.subprocess.Process, log: Path, timeout_s: float = 20) -> None:
    """Until the worker's /readyz answers 200 (fails at once if the process died)."""
    async with httpx.AsyncClient(timeout=1) as client:

        async def ready() -> bool:
            assert proc.returncode is None, log.read_bytes().decode()  # noqa: ASYNC240 (a small log, on failure)
            try:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await poll_until(ready, timeout_s=timeout_s, every_s=0.1)


async def test_sigterm_lets_the_running_job_finish_and_exits_0(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, redis: Redis, event_tap: JobEventTap,
    tmp_path: Path,
) -> None:
    # A child process refreshes its queue list at the deployed default, as it always did here.
    settings = worker_settings(worker_id="w-term", drain_timeout_s=10.0, queue_refresh_interval_s=1.0)
    log = tmp_path / "worker.log"
    proc = await spawn_worker(settings, log)
    try:
        await wait_ready(settings.worker_port, proc, log)
        spec = job("sleep", {"ms": 1000})
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: (S, 1) in event_tap.kinds(spec.job_id))
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0, log.read_bytes().decode()
    assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (C, 1)]
    await asyncio.sleep(0.3)  # the behaviour under test: nothing is requeued afterwards
    assert event_tap.kinds(spec.job_id) == [(S, 1), (C, 1)]
    assert await dispatcher.held([JobRef.of(spec)]) == set()
    assert await redis.zcard(dispatcher.keys.queue("q").delayed) == 0
    assert await dispatcher.depth("q") == 0
    assert await redis.exists(dispatcher.keys.worker("w-term")) == 0


async def test_drain_timeout_hands_unfinished_jobs_back_due_now(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, redis: Redis, event_tap: JobEventTap
) -> None:
    long, short = job("sleep", {"ms": 30_000}), job("sleep", {"ms": 300})
    began = time.monotonic()
    async with running_worker(worker_settings(drain_timeout_s=0.8)):
        await dispatcher.push([(long, 0), (short, 0)])
        await event_tap.wait_for(lambda: all((S, 1) in event_tap.kinds(j.job_id) for j in (long, short)))
    assert time.monotonic() - began < 10
    assert await event_tap.wait_terminal(short.job_id) == [(S, 1), (C, 1)]
    await event_tap.wait_for(lambda: (R, 1) in event_tap.kinds(long.job_id))
    assert event_tap.kinds(long.job_id) == [(S, 1), (R, 1)]
    retry = event_tap.of(long.job_id)[-1]
    assert retry.data["error"] == {
        "type": "worker_shutdown", "message": "the worker shut down before the handler finished", "retryable": True,
    }
    assert retry.data["delayMs"] == 0
    # Its lease is released; once the scheduler records the retry and pushes attempt 2 at the
    # time the event names, it is due at once. The short job is gone for good.
    assert await dispatcher.leased([JobRef.of(long)]) == set()
    assert await dispatcher.push([(next_attempt_of(long, retry), due_ms(retry))]) == [True]
    assert due_ms(retry) <= now_ms()
    [promoted] = await dispatcher.promote_due()
    assert (promoted.job_id, promoted.attempt) == (long.job_id, 2)
    assert await dispatcher.held([JobRef.of(short)]) == set()


async def test_sigkill_leaves_the_lease_until_it_expires_then_another_worker_runs_it(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap, tmp_path: Path
) -> None:
    settings = worker_settings(worker_id="w-kill", queue_refresh_interval_s=1.0)
    assert settings.lease_ms == 3000
    log = tmp_path / "worker.log"
    proc = await spawn_worker(settings, log)
    spec = job("sleep", {"ms": 2000})
    try:
        await wait_ready(settings.worker_port, proc, log)
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: (S, 1) in event_tap.kinds(spec.job_id))
    finally:
        proc.kill()
        await proc.wait()
    killed = time.monotonic()
    assert await dispatcher.leased([JobRef.of(spec)]) == {spec.job_id}
    expired = await poll_until(lambda: dispatcher.expired(["q"]), timeout_s=10, every_s=0.1)
    assert time.monotonic() - killed > 1.0  # the lease held until its deadline
    assert [(e.spec.job_id, e.outcome, e.spec.attempt) for e in expired] == [(spec.job_id, "retry", 1)]
    # The scheduler records the lost attempt, then pushes the next one, which replaces the dead lease.
    assert await dispatcher.push([(spec.model_copy(update={"attempt": 2}), now_ms())]) == [True]
    [promoted] = await dispatcher.promote_due()
    assert promoted.attempt == 2
    async with running_worker(worker_settings()) as second:
        kinds = await event_tap.wait_terminal(spec.job_id)
    assert kinds == [(S, 1), (S, 2), (C, 2)]
    final = event_tap.of(spec.job_id)[-1]
    assert final.data["workerId"] == second.worker_id and final.data["result"] == {"sleptMs": 2000}


async def test_a_fetch_loop_waiting_for_a_free_slot_ends_at_once_on_stop(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("sleep", {"ms": 30_000})
    async with running_worker(worker_settings(worker_concurrency=1, drain_timeout_s=0.5)) as worker:
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: (S, 1) in event_tap.kinds(spec.job_id))  # every slot is taken
        fetch = worker._fetch_task
        assert fetch is not None and not fetch.done()
        began = time.monotonic()
    # The fetch loop left by itself (not cancelled after FETCH_STOP_S), so the stop took about
    # the drain timeout plus the hand-back.
    assert fetch.done() and not fetch.cancelled() and fetch.exception() is None
    assert time.monotonic() - began < 2.0
    await event_tap.wait_for(lambda: (R, 1) in event_tap.kinds(spec.job_id))
