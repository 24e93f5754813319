"""The scheduler's sweep of the worker registry: `worker_stopped` (gone) once per death, long-gone members pruned."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from shared.dispatch.keys import GONE_LISTED_MS
from shared.dispatch.protocol import now_ms
from tests.fixtures.polling import eventually
from tests.integration.scheduler.conftest import Harness


async def _worker_events(bootstrap: str, topic: str, want: int, settle_s: float = 1.5) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline, quiet_since = time.monotonic() + 20, time.monotonic()
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    found.append(dict(orjson.loads(r.value)) | {"key": r.key.decode()})
                    quiet_since = time.monotonic()
            if len(found) >= want and time.monotonic() - quiet_since > settle_s:
                break
    finally:
        await consumer.stop()
    return found


async def test_gone_workers_are_announced_once_and_pruned_after_ten_minutes(
    harness: Harness, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    service = await harness.start()
    sweep = service.worker_sweep
    assert sweep is not None
    keys, redis = harness.dispatcher.keys, harness.redis
    now = now_ms()
    await redis.zadd(keys.workers, {"long-gone": now - GONE_LISTED_MS - 60_000, "just-gone": now - 5000, "alive": now})
    await redis.set(keys.worker("alive"), b"{}", px=60_000)

    await eventually(lambda: sweep.announced, lambda n: n >= 1, timeout_s=15)
    for _ in range(3):
        await sweep.tick()  # more sweeps: nothing more to say
    members = {str(m, "utf-8") for m in await redis.zrange(keys.workers, 0, -1)}  # type: ignore[arg-type]
    assert members == {"just-gone", "alive"}  # pruned: gone for over ten minutes
    [event] = await _worker_events(kafka_bootstrap, kafka_topics["workers"], want=1)
    assert (event["type"], event["key"], event["data"]["workerId"]) == ("worker_stopped", "just-gone", "just-gone")
    assert event["data"]["reason"] == "gone" and event["jobId"] is None and event["eventId"]

    # The living one dies; the gone one comes back (same id) and dies again: each death announced once.
    await redis.delete(keys.worker("alive"))
    await redis.set(keys.worker("just-gone"), b"{}", px=60_000)
    await redis.zadd(keys.workers, {"just-gone": now_ms()})
    await sweep.tick()
    assert not await redis.sismember(keys.workers_gone, "just-gone")
    await redis.delete(keys.worker("just-gone"))
    for _ in range(3):
        await sweep.tick()
    events = await _worker_events(kafka_bootstrap, kafka_topics["workers"], want=3)
    assert sorted(e["data"]["workerId"] for e in events) == ["alive", "just-gone", "just-gone"]
    assert len({e["eventId"] for e in events}) == 3
