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
from tests.integration.worker.support import (
    Env,
    EventTap,
    due_ms,
    job,
    next_attempt_of,
    poll_until,
    running_worker,
    spawn_worker,
)

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

        await poll_until(ready, timeout_s, every_s=0.1)


async def test_sigterm_lets_the_running_job_finish_and_exits_0(
    env: Env, dispatcher: Dispatcher, redis: Redis, tap: EventTap, tmp_path: Path
) -> None:
    proc_env = env.process_env(WORKER_ID="w-term", DRAIN_TIMEOUT_S="10")
    log = tmp_path / "worker.log"
    proc = await spawn_worker(proc_env, log)
    try:
        await wait_ready(int(proc_env["WORKER_PORT"]), proc, log)
        spec = job("sleep", {"ms": 1000})
        await dispatcher.push([(spec, 0)])
        await tap.wait_for(lambda: (S, 1) in tap.kinds(spec.job_id))
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0, log.read_bytes().decode()
    assert await tap.wait_terminal(spec.job_id) == [(S, 1), (C, 1)]
    await asyncio.sleep(0.3)  # the behaviour under test: nothing is requeued afterwards
    assert tap.kinds(spec.job_id) == [(S, 1), (C, 1)]
    assert await dispatcher.held([JobRef.of(spec)]) == set()
    assert await redis.zcard(dispatcher.keys.queue("q").delayed) == 0
    assert await dispatcher.depth("q") == 0
    assert await redis.exists(dispatcher.keys.worker("w-term")) == 0


async def test_drain_timeout_hands_unfinished_jobs_back_due_now(
    env: Env, dispatcher: Dispatcher, redis: Redis, tap: EventTap
) -> None:
    long, short = job("sleep", {"ms": 30_000}), job("sleep", {"ms": 300})
    began = time.monotonic()
    async with running_worker(env.settings(drain_timeout_s=0.8)):
        await dispatcher.push([(long, 0), (short, 0)])
        await tap.wait_for(lambda: (S, 1) in tap.kinds(long.job_id) and (S, 1) in tap.kinds(short.job_id))
    assert time.monotonic() - began < 10
    assert await tap.wait_terminal(short.job_id) == [(S, 1), (C, 1)]
    await tap.wait_for(lambda: (R, 1) in tap.kinds(long.job_id))
    assert tap.kinds(long.job_id) == [(S, 1), (R, 1)]
    retry = tap.of(long.job_id)[-1]
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
    env: Env, dispatcher: Dispatcher, tap: EventTap, tmp_path: Path
) -> None:
    proc_env = env.process_env(WORKER_ID="w-kill")  # LEASE_MS=3000
    log = tmp_path / "worker.log"
    proc = await spawn_worker(proc_env, log)
    spec = job("sleep", {"ms": 2000})
    try:
        await wait_ready(int(proc_env["WORKER_PORT"]), proc, log)
        await dispatcher.push([(spec, 0)])
        await tap.wait_for(lambda: (S, 1) in tap.kinds(spec.job_id))
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
    async with running_worker(env.settings()) as second:
        kinds = await tap.wait_terminal(spec.job_id)
    assert kinds == [(S, 1), (S, 2), (C, 2)]
    final = tap.of(spec.job_id)[-1]
    assert final.data["workerId"] == second.worker_id and final.data["result"] == {"sleptMs": 2000}


async def test_a_fetch_loop_waiting_for_a_free_slot_ends_at_once_on_stop(
    env: Env, dispatcher: Dispatcher, tap: EventTap
) -> None:
    spec = job("sleep", {"ms": 30_000})
    async with running_worker(env.settings(worker_concurrency=1, drain_timeout_s=0.5)) as worker:
        await dispatcher.push([(spec, 0)])
        await tap.wait_for(lambda: (S, 1) in tap.kinds(spec.job_id))  # every slot is taken
        fetch = worker._fetch_task
        assert fetch is not None and not fetch.done()
        began = time.monotonic()
    # The fetch loop left by itself (not cancelled after FETCH_STOP_S), so the stop took about
    # the drain timeout plus the hand-back.
    assert fetch.done() and not fetch.cancelled() and fetch.exception() is None
    assert time.monotonic() - began < 2.0
    await tap.wait_for(lambda: (R, 1) in tap.kinds(spec.job_id))
