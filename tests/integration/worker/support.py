"""Helpers for the worker tests: settings, an in-process worker, an event tap, a promoter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import ConsumerRecord

from deploy.local.servers import free_port
from services.worker.service import WorkerService
from shared.dispatch.protocol import Dispatcher
from shared.events import JOB_TOPICS, Envelope, EventType
from shared.kafka.consumer import ConsumerLoop, decode_records
from shared.models import JobSpec, RetryPolicy
from shared.settings import WorkerSettings

T = TypeVar("T")
FAST_RETRY = RetryPolicy(base_delay_ms=10, max_delay_ms=50, jitter=False)
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Env:
    """Where the session's servers are and this test's isolation prefixes."""

    redis_url: str
    kafka_bootstrap: str
    redis_prefix: str
    topic_prefix: str

    def settings(self, **overrides: Any) -> WorkerSettings:
        """Worker settings for this test: fast Kafka joins, short leases, a free health port."""
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            "redis_key_prefix": self.redis_prefix,
            "kafka_topic_prefix": self.topic_prefix,
            "kafka_session_timeout_ms": 1000,
            "kafka_heartbeat_interval_ms": 300,
            "lease_ms": 3000,
            "drain_timeout_s": 5.0,
            "worker_port": free_port(),
            "worker_id": f"w-{uuid.uuid4().hex[:6]}",
            "queue_refresh_interval_s": 60.0,  # so tests see the wake-driven refresh, not the timer
        }
        values.update(overrides)
        return WorkerSettings(**values)

    def process_env(self, **overrides: str) -> dict[str, str]:
        """Environment for `python -m services.worker` as a subprocess."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "KAFKA_", "REDIS_"))}
        env.update({
            "REDIS_URL": self.redis_url, "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "REDIS_KEY_PREFIX": self.redis_prefix, "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "KAFKA_SESSION_TIMEOUT_MS": "1000", "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            "LEASE_MS": "3000", "WORKER_PORT": str(free_port()), "LOG_FORMAT": "text",
            "PYTHONPATH": str(ROOT),
        })
        env.update(overrides)
        return env


def job(job_type: str, payload: dict[str, Any] | None = None, *, queue: str = "q", **extra: Any) -> JobSpec:
    """A spec as the scheduler would push it (fast retries unless told otherwise)."""
    extra.setdefault("retry", FAST_RETRY)
    return JobSpec(job_id=uuid.uuid4(), queue=queue, job_type=job_type, payload=payload or {}, **extra)


class EventTap:
    """Reads every job topic of the test from the beginning and keeps the envelopes."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.events: list[Envelope] = []
        self.headers: dict[uuid.UUID, list[tuple[str, bytes]]] = {}
        self._changed = asyncio.Event()
        self._loop = ConsumerLoop(settings, topics=JOB_TOPICS, group_id=None, handler=self._on_batch,
                                  client_id="worker-test-tap")
        self._task: asyncio.Task[None] | None = None

    async def _on_batch(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            self.headers[uuid.UUID(record.key.decode())] = list(record.headers)
        self.events.extend(decode_records(records))
        self._changed.set()

    async def __aenter__(self) -> EventTap:
        self._task = asyncio.create_task(self._loop.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._loop.stop()
        if self._task is not None:
            await asyncio.wait_for(self._task, 15)

    def of(self, job_id: uuid.UUID) -> list[Envelope]:
        """Events of one job, in attempt then rank order (topics interleave arbitrarily)."""
        from shared.events import RANK

        mine = [e for e in self.events if e.job_id == job_id]
        return sorted(mine, key=lambda e: (e.attempt, RANK[e.type], e.occurred_at))

    def kinds(self, job_id: uuid.UUID, *, skip_progress: bool = True) -> list[tuple[EventType, int]]:
        """(type, attempt) of one job's events."""
        return [(e.type, e.attempt) for e in self.of(job_id) if not (skip_progress and e.type is EventType.PROGRESS)]

    async def wait_for(self, done: Callable[[], bool], timeout_s: float = 20.0) -> None:
        """Until `done()` holds (re-checked on every batch)."""
        async with asyncio.timeout(timeout_s):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait_terminal(self, job_id: uuid.UUID, timeout_s: float = 20.0) -> list[tuple[EventType, int]]:
        """Until the job has a completed, failed or cancelled event; returns its kinds."""
        terminal = {EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED}
        await self.wait_for(lambda: any(e.type in terminal for e in self.of(job_id)), timeout_s)
        return self.kinds(job_id)


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
    dispatcher: Dispatcher, tap: EventTap, *specs: JobSpec, every_s: float = 0.02
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


async def poll_until(probe: Callable[[], Awaitable[T]], timeout_s: float = 10.0, every_s: float = 0.05) -> T:
    """The first truthy value `probe()` returns; for state (Redis, a process) that offers no event."""
    async with asyncio.timeout(timeout_s):
        while not (value := await probe()):  # noqa: ASYNC110 (nothing to wait on but the state itself)
            await asyncio.sleep(every_s)
    return value


async def spawn_worker(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """`python -m services.worker` as a child process logging to `log_path`."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.worker", env=env, cwd=str(ROOT), stdout=log, stderr=log,
        )
