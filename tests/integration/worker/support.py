"""Helpers for the worker tests: job specs, an in-process worker, a stand-in scheduler, a child process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from services.worker.service import WorkerService
from shared.dispatch.protocol import Dispatcher
from shared.events import Envelope, EventType
from shared.models import JobSpec, RetryPolicy
from shared.settings import WorkerSettings
from tests.fixtures.resources import ROOT, JobEventTap, process_env

FAST_RETRY = RetryPolicy(base_delay_ms=10, max_delay_ms=50, jitter=False)


def job(job_type: str, payload: dict[str, Any] | None = None, *, queue: str = "q", **extra: Any) -> JobSpec:
    """A spec as the scheduler would push it (fast retries unless told otherwise)."""
    extra.setdefault("retry", FAST_RETRY)
    return JobSpec(job_id=uuid.uuid4(), queue=queue, job_type=job_type, payload=payload or {}, **extra)


@contextlib.asynccontextmanager
async def running_worker(settings: WorkerSettings) -> AsyncIterator[WorkerService]:
    """An in-process worker, stopped (gracefully) on exit."""
    service = WorkerService(settings)
    try:
        await service.start()
        yield service
    finally:
        await service.stop()
    assert not service.failed.is_set(), "a worker task crashed"


@contextlib.asynccontextmanager
async def scheduling(
    dispatcher: Dispatcher, tap: JobEventTap, *specs: JobSpec, every_s: float = 0.02
) -> AsyncIterator[None]:
    """Stand in for the scheduler: push the next attempt of each `retry` the tap sees (due at its
    nextRunAt), as the scheduler does once it recorded the retry, and promote due delayed jobs."""
    by_id = {spec.job_id: spec for spec in specs}
    followed: set[tuple[uuid.UUID, int]] = set()

    # Stopped by an event, not by cancelling: redis-py can swallow a cancellation that lands
    # mid-command (redis/redis-py#2028), and the loop then ran on while the test waited for it.
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            for e in list(tap.events):
                if e.type is EventType.RETRY and (e.job_id, e.attempt) not in followed and e.job_id in by_id:
                    followed.add((e.job_id, e.attempt))
                    await dispatcher.push([(next_attempt_of(by_id[e.job_id], e), due_ms(e))])
            await dispatcher.promote_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


def next_attempt_of(spec: JobSpec, retry: Envelope) -> JobSpec:
    """The spec of the attempt after the one a `retry` event ended."""
    return spec.model_copy(update={"attempt": retry.attempt + 1})


def due_ms(retry: Envelope) -> int:
    """When a `retry` event says the next attempt is due (never 0: that would mean ready now)."""
    return max(int(datetime.fromisoformat(retry.data["nextRunAt"]).timestamp() * 1000), 1)


async def spawn_worker(settings: WorkerSettings, log_path: Path) -> asyncio.subprocess.Process:
    """`python -m services.worker` with `settings`, as a child process logging to `log_path`."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.worker", env=process_env(settings), cwd=str(ROOT), stdout=log,
            stderr=log,
        )
