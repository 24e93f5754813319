"""Cancel flags, lost leases, the worker registry, and a Kafka that does not answer."""

from __future__ import annotations

import asyncio
import time

import orjson
from redis.asyncio import Redis

from deploy.local.servers import free_port
from shared.dispatch.protocol import Dispatcher, JobRef
from shared.events import EventType
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import JobEventTap
from tests.integration.worker.conftest import WorkerSettingsFactory
from tests.integration.worker.support import job, running_worker

S, C, X = EventType.STARTED, EventType.COMPLETED, EventType.CANCELLED


async def test_cancel_flag_stops_a_running_handler(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, event_tap: JobEventTap
) -> None:
    spec = job("sleep", {"ms": 20_000})
    async with running_worker(worker_settings()) as worker:
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: event_tap.kinds(spec.job_id) == [(S, 1)])
        assert await dispatcher.cancel("q", spec.job_id) == "running"
        flagged = time.monotonic()
        assert await event_tap.wait_terminal(spec.job_id) == [(S, 1), (X, 1)]
        assert time.monotonic() - flagged < 3  # checked every second, not at the next heartbeat
        assert event_tap.of(spec.job_id)[-1].data == {"reason": "cancelled_by_user", "by": "worker"}

        async def acked() -> bool:  # the ack follows Kafka's acknowledgement of `cancelled`
            return await dispatcher.held([JobRef.of(spec)]) == set()

        await poll_until(acked, timeout_s=5)
        executor = worker.executor
        assert executor is not None

        async def idle() -> bool:
            return not executor.job_ids()

        await poll_until(idle, timeout_s=2)


async def test_a_lost_lease_stops_the_handler_and_emits_nothing_more(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher, redis: Redis, event_tap: JobEventTap
) -> None:
    spec = job("sleep", {"ms": 20_000})
    async with running_worker(worker_settings(lease_ms=1500)) as worker:
        await dispatcher.push([(spec, 0)])
        await event_tap.wait_for(lambda: event_tap.kinds(spec.job_id) == [(S, 1)])
        # Another worker takes the job over, as requeue + pop would after an expiry.
        await redis.hset(dispatcher.keys.queue("q").owners, str(spec.job_id), "someone-else:1:1")
        executor = worker.executor
        assert executor is not None

        async def idle() -> bool:
            return not executor.job_ids()

        await poll_until(idle, timeout_s=3)
        await asyncio.sleep(0.5)  # the behaviour under test: nothing more is emitted meanwhile
    assert event_tap.kinds(spec.job_id) == [(S, 1)]
    assert await redis.hget(dispatcher.keys.queue("q").owners, str(spec.job_id)) == b"someone-else:1:1"


async def test_worker_registry_entry_lives_while_the_worker_does(
    worker_settings: WorkerSettingsFactory, redis: Redis, dispatcher: Dispatcher
) -> None:
    settings = worker_settings(worker_queues="a,b", worker_concurrency=7)
    key = dispatcher.keys.worker(settings.worker_id)
    async with running_worker(settings):
        raw = await redis.get(key)
        assert raw is not None
        entry = orjson.loads(raw)
        assert entry["workerId"] == settings.worker_id and entry["queues"] == ["a", "b"]
        assert entry["concurrency"] == 7 and entry["inFlight"] == 0 and entry["pid"] > 0 and entry["hostname"]
        assert entry["startedAt"]
        ttl = await redis.pttl(key)
        assert 0 < ttl <= 3 * settings.lease_ms // 3
        assert await redis.zscore(dispatcher.keys.workers, settings.worker_id) is not None
    assert await redis.exists(key) == 0
    assert await redis.zscore(dispatcher.keys.workers, settings.worker_id) is None


async def test_without_kafka_acks_the_lease_is_kept_alive_and_never_released(
    worker_settings: WorkerSettingsFactory, dispatcher: Dispatcher
) -> None:
    # Nothing listens on this port: `started` can never be acknowledged.
    settings = worker_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_request_timeout_ms=500,
                            lease_ms=1200, drain_timeout_s=0.5)
    spec = job("noop")
    async with running_worker(settings) as worker:
        await dispatcher.push([(spec, 0)])
        await asyncio.sleep(2.5)  # the behaviour under test: two lease periods, only heartbeats keep it
        assert await dispatcher.leased([JobRef.of(spec)]) == {spec.job_id}
        assert await dispatcher.expired(["q"]) == []
        assert worker.executor is not None and worker.executor.job_ids() == [spec.job_id]
    # Stopped without Kafka: the job was neither acked nor handed back; its lease just expires.
    assert await dispatcher.leased([JobRef.of(spec)]) == {spec.job_id}
    [expired] = await poll_until(lambda: dispatcher.expired(["q"]), timeout_s=5)
    assert (expired.spec.job_id, expired.outcome, expired.spec.attempt) == (spec.job_id, "retry", 1)
