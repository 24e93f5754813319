"""The Redis dispatch protocol (shared/dispatch) against a real Valkey."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from shared.dispatch.protocol import Dispatcher, connect, now_ms
from shared.models import JobSpec


def spec(queue: str = "q", priority: int = 5, **extra: object) -> JobSpec:
    fields: dict[str, object] = {"payload": {}, **extra}
    return JobSpec(job_id=uuid.uuid4(), queue=queue, job_type="noop", priority=priority, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def dispatcher(redis: Redis, redis_prefix: str) -> Dispatcher:
    return Dispatcher(redis, redis_prefix)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 10)), min_size=1, max_size=40))
async def test_pop_order_is_priority_then_fifo_across_queues(redis: Redis, jobs: list[tuple[str, int]]) -> None:
    d = Dispatcher(redis, f"p{uuid.uuid4().hex[:8]}")
    specs = [spec(q, p) for q, p in jobs]
    for s in specs:  # one by one, so insertion order is well defined
        assert await d.push([(s, 0)]) == [True]
    popped = []
    while batch := await d.pop(["a", "b", "c"], 7, 10_000, "w"):
        popped += [lease.spec.job_id for lease in batch]
    order = {s.job_id: i for i, s in enumerate(specs)}
    expected = sorted(specs, key=lambda s: (-s.priority, order[s.job_id]))
    assert popped == [s.job_id for s in expected]


async def test_push_is_idempotent_and_a_popped_job_is_leased(dispatcher: Dispatcher) -> None:
    s = spec(payload={"big": 12345678901234567890, "nested": {"x": [1, 2]}})
    assert await dispatcher.push([(s, 0)]) == [True]
    assert await dispatcher.push([(s, 0)]) == [False]
    [lease] = await dispatcher.pop(["q"], 10, 5_000, "w1")
    assert lease.spec == s  # the payload survives Redis byte for byte
    assert await dispatcher.pop(["q"], 10, 5_000, "w1") == []
    assert await dispatcher.leased([s.job_id]) == {s.job_id}
    assert await dispatcher.held([s.job_id]) == {s.job_id}


async def test_only_the_lease_owner_can_ack(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 5_000, "w1")
    forged = type(lease)(lease.spec, "someone-else:1")
    assert await dispatcher.ack([forged]) == 0
    assert await dispatcher.heartbeat([forged], 5_000) == {s.job_id}
    assert await dispatcher.ack([lease]) == 1
    assert await dispatcher.held([s.job_id]) == set()
    assert await dispatcher.ack([lease]) == 0  # a second ack does nothing


async def test_expired_leases_come_back_as_the_next_attempt_until_exhausted(dispatcher: Dispatcher) -> None:
    s = spec(max_attempts=2)
    await dispatcher.push([(s, 0)])
    [first] = await dispatcher.pop(["q"], 1, 50, "w1")
    assert first.spec.attempt == 1
    await asyncio.sleep(0.1)
    [expired] = await dispatcher.requeue_expired()
    assert (expired.outcome, expired.spec.attempt) == ("retry", 1)
    assert await dispatcher.ack([first]) == 0  # the dead worker's late ack is refused
    [promoted] = await dispatcher.promote_due()
    assert promoted.attempt == 2
    [second] = await dispatcher.pop(["q"], 1, 50, "w2")
    assert second.spec.attempt == 2
    await asyncio.sleep(0.1)
    [gone] = await dispatcher.requeue_expired()
    assert (gone.outcome, gone.spec.attempt) == ("exhausted", 2)
    assert await dispatcher.held([s.job_id]) == set()


async def test_heartbeat_keeps_a_lease_alive(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 300, "w1")
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await dispatcher.heartbeat([lease], 300) == set()
    assert await dispatcher.requeue_expired() == []


async def test_delayed_jobs_wait_until_due(dispatcher: Dispatcher) -> None:
    later, soon = spec(), spec()
    await dispatcher.push([(later, now_ms() + 60_000), (soon, now_ms() + 100)])
    assert await dispatcher.pop(["q"], 10, 1000, "w") == []
    await asyncio.sleep(0.15)
    assert [s.job_id for s in await dispatcher.promote_due()] == [soon.job_id]
    [lease] = await dispatcher.pop(["q"], 10, 1000, "w")
    assert lease.job_id == soon.job_id


async def test_retry_later_moves_the_next_attempt_to_the_delayed_set(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 5000, "w")
    assert await dispatcher.retry_later(lease, now_ms())
    assert not await dispatcher.retry_later(lease, now_ms())  # no longer owned
    [again] = await dispatcher.promote_due()
    assert again.attempt == 2


async def test_cancel_removes_waiting_jobs_and_flags_running_ones(dispatcher: Dispatcher) -> None:
    waiting, running, delayed = spec(), spec(), spec()
    await dispatcher.push([(running, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 5000, "w")
    await dispatcher.push([(waiting, 0), (delayed, now_ms() + 60_000)])
    assert await dispatcher.cancel(waiting.job_id) == "removed"
    assert await dispatcher.cancel(delayed.job_id) == "removed"
    assert await dispatcher.cancel(running.job_id) == "running"
    assert await dispatcher.cancel(uuid.uuid4()) == "absent"
    assert await dispatcher.cancelled([running.job_id, lease.job_id]) == {running.job_id}
    assert await dispatcher.pop(["q"], 10, 5000, "w") == []
    assert await dispatcher.depth("q") == 0


async def test_a_flagged_job_is_never_handed_out(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.redis.set(dispatcher.keys.cancel(s.job_id), "1")
    await dispatcher.push([(s, 0)])
    assert await dispatcher.pop(["q"], 1, 5000, "w") == []


async def test_wait_for_work_wakes_on_push(dispatcher: Dispatcher) -> None:
    waiter = asyncio.create_task(dispatcher.wait_for_work(5))
    await asyncio.sleep(0.05)
    await dispatcher.push([(spec(), 0)])
    await asyncio.wait_for(waiter, 2)
    assert await dispatcher.queues() == ["q"]


async def test_a_batch_push_reports_each_job_and_leaves_a_wake_token_per_ready_job(
    dispatcher: Dispatcher, redis: Redis
) -> None:
    ready = [spec(priority=p) for p in (1, 9, 5)]
    later = spec()
    known = ready[0]
    assert await dispatcher.push([(known, 0)]) == [True]
    await redis.delete(dispatcher.keys.wake)
    result = await dispatcher.push([(s, 0) for s in ready] + [(later, now_ms() + 60_000), (ready[1], 0)])
    assert result == [False, True, True, True, False]  # known before, and a repeat within the batch
    assert await redis.llen(dispatcher.keys.wake) == 2  # the two new ready jobs; the delayed one waits
    leases = await dispatcher.pop(["q"], 10, 5_000, "w")
    assert [lease.spec.job_id for lease in leases] == [ready[1].job_id, ready[2].job_id, known.job_id]


async def test_a_pop_of_several_jobs_drops_their_other_wake_tokens(dispatcher: Dispatcher, redis: Redis) -> None:
    await dispatcher.push([(spec(), 0) for _ in range(5)])
    assert await redis.llen(dispatcher.keys.wake) == 5
    await dispatcher.wait_for_work(1)  # a worker takes one token, then pops what it can
    assert len(await dispatcher.pop(["q"], 3, 5_000, "w")) == 3
    assert await redis.llen(dispatcher.keys.wake) == 2  # one per job still waiting
