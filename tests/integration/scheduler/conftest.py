"""The scheduler in-process on the session's real servers, with a tap on every job topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from services.scheduler.service import SchedulerService
from shared.dispatch.protocol import Dispatcher
from shared.events import Envelope
from shared.kafka.producer import EventProducer
from shared.settings import SchedulerSettings
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import JobEventTap, SettingsFactory
from tests.integration.scheduler import support

# Fast promotion and lease checks; reconciliation out of the way unless a test asks for it.
SCHEDULER_TEST_DEFAULTS: dict[str, Any] = {
    "promote_interval_s": 0.05, "lease_check_interval_s": 0.2, "reconcile_interval_s": 60.0,
    "reconcile_grace_s": 60.0, "db_pool_max": 5,
}


@dataclass
class Harness:
    """One test's scheduler(s) plus direct access to Postgres, Redis and Kafka."""

    service_settings: SettingsFactory
    pool: asyncpg.Pool
    redis: Redis
    dispatcher: Dispatcher
    producer: EventProducer
    tap: JobEventTap
    services: list[SchedulerService] = field(default_factory=list)

    def settings(self, **overrides: Any) -> SchedulerSettings:
        """Scheduler settings of this test (a free port); reconciliation stays out of the way unless asked for."""
        return self.service_settings(SchedulerSettings, **(SCHEDULER_TEST_DEFAULTS | overrides))

    async def start(self, **overrides: Any) -> SchedulerService:
        """A running scheduler whose consumer has its partitions (stopped at the end of the test)."""
        service = SchedulerService(self.settings(**overrides))
        self.services.append(service)
        await service.start()
        assert service.consumer_assigned is not None
        await asyncio.wait_for(service.consumer_assigned.wait(), timeout=20)
        return service

    async def insert(self, **fields: Any) -> uuid.UUID:
        return await support.insert_job(self.pool, **fields)

    async def submitted(self, job_id: uuid.UUID) -> Envelope:
        """The `submitted` event of a row."""
        return await support.submitted_event(self.pool, job_id)

    async def submit(self, *job_ids: uuid.UUID) -> None:
        """Announce rows on jobs.submitted, as the API's outbox relay would."""
        await support.publish(self.producer, *[await self.submitted(j) for j in job_ids])

    async def status_counts(self) -> dict[str, int]:
        """How many rows are in each status."""
        return {r["status"]: r["n"] for r in await self.pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY 1")}

    async def publish(self, *envelopes: Envelope, key: uuid.UUID | None = None) -> None:
        await support.publish(self.producer, *envelopes, key=key)

    async def row(self, job_id: uuid.UUID) -> asyncpg.Record:
        return await support.job_row(self.pool, job_id)

    async def attempts(self, job_id: uuid.UUID) -> list[asyncpg.Record]:
        return await support.attempt_rows(self.pool, job_id)

    async def wait_status(self, job_id: uuid.UUID, status: str, timeout_s: float = 15.0) -> asyncpg.Record:
        """Until the row has `status`; returns the row."""
        return await poll_until(lambda: self.row(job_id), lambda r: r["status"] == status, timeout_s=timeout_s)

    async def ready_ids(self, queue: str = "q") -> list[uuid.UUID]:
        """Job ids in a queue's ready set, best first."""
        members = await self.redis.zrange(self.dispatcher.keys.queue(queue).ready, 0, -1)
        return [uuid.UUID(x.decode() if isinstance(x, bytes) else str(x)) for x in members]

    async def wait_ready(self, *job_ids: uuid.UUID, queue: str = "q") -> list[uuid.UUID]:
        """Until the ready set holds exactly these jobs (pushes follow the commit); returns them, best first."""
        want = sorted(job_ids)
        return await poll_until(lambda: self.ready_ids(queue), lambda ids: sorted(ids) == want, timeout_s=15)

    async def redis_attempt(self, job_id: uuid.UUID, queue: str = "q") -> int | None:
        """The attempt Redis would hand out for a job (None when Redis does not hold it)."""
        raw = await self.redis.hget(self.dispatcher.keys.queue(queue).state, str(job_id))
        return int(raw.decode().split(":")[0]) if raw is not None else None

    async def lose_redis_data(self) -> int:
        """Delete every key of this test's prefix (global and per queue): FLUSHALL, scoped to the test's cluster."""
        prefix = self.dispatcher.keys.prefix
        keys = [k for pattern in (f"{prefix}:*", f"{{{prefix}:*") async for k in self.redis.scan_iter(match=pattern)]
        return int(await self.redis.delete(*keys)) if keys else 0


@pytest.fixture
async def harness(
    service_settings: SettingsFactory, db_pool: asyncpg.Pool, redis: Redis, dispatcher: Dispatcher,
    producer: EventProducer, event_tap: JobEventTap,
) -> AsyncIterator[Harness]:
    """The test's clients (the shared fixtures, closed after the schedulers stop) and its schedulers."""
    h = Harness(service_settings, db_pool, redis, dispatcher, producer, event_tap)
    try:
        yield h
    finally:
        for service in h.services:
            await service.stop()
    for service in h.services:
        assert not service.failed.is_set(), "a scheduler task crashed"
