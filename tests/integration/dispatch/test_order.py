"""Dispatch order against a real Valkey: strict priority, FIFO within one, fair turns between keys, aging."""

from __future__ import annotations

import asyncio
import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from shared.dispatch.config import Aging, DispatchConfig
from shared.dispatch.protocol import Dispatcher, Lease
from shared.dispatch.records import WaitingJob
from tests.integration.dispatch.support import job, paused_with


async def test_a_paused_backlog_runs_high_first_and_fifo_within_each_at_concurrency_50(dispatcher: Dispatcher) -> None:
    low = [job(priority=1) for _ in range(100)]
    high = [job(priority=9) for _ in range(100)]
    await paused_with(dispatcher, low + high)
    rank = {s.job_id: i for i, s in enumerate(high + low)}  # the one right dispatch order
    calls: list[tuple[float, float, Lease]] = []

    async def popper(n: int) -> None:
        k = 0
        while True:
            k += 1
            began = time.perf_counter()
            leases = await dispatcher.pop(["q"], 1, 60_000, f"w{n}.{k}")
            if not leases:
                return
            calls.append((began, time.perf_counter(), leases[0]))

    await asyncio.gather(*(popper(n) for n in range(50)))
    assert sorted(rank[lease.job_id] for _, _, lease in calls) == list(range(200))
    # Pops run one at a time in Redis: a pop that answered before another was sent took a job
    # earlier in the order. (Overlapping calls may come back in either order.)
    by_start = sorted(calls, key=lambda c: c[0])
    for began, _, later in by_start:
        for _, ended, earlier in calls:
            if ended < began:
                assert rank[earlier.job_id] < rank[later.job_id]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(st.integers(0, 10), st.tuples(st.just("pop"), st.integers(1, 5))), max_size=60))
async def test_any_mix_of_pushes_and_pops_takes_best_priority_then_first_in(
    redis: Redis, ops: list[int | tuple[str, int]]
) -> None:
    d = Dispatcher(redis, f"h{uuid.uuid4().hex[:8]}")
    waiting: list[tuple[int, int, uuid.UUID]] = []  # the model: (-priority, push index, id)
    for i, op in enumerate(ops):
        if isinstance(op, int):
            s = job(priority=op)
            await d.push([(s, 0)])
            waiting.append((-op, i, s.job_id))
        else:
            waiting.sort()
            want, waiting = waiting[:op[1]], waiting[op[1]:]
            assert [lease.job_id for lease in await d.pop(["q"], op[1], 60_000, "w")] == [x[2] for x in want]
    waiting.sort()
    assert [lease.job_id for lease in await d.pop(["q"], 100, 60_000, "w")] == [x[2] for x in waiting]


async def test_keys_take_turns_so_a_small_tenant_starts_among_the_first_pops(dispatcher: Dispatcher) -> None:
    a = [job(fairness_key="A") for _ in range(500)]
    b = [job(fairness_key="B") for _ in range(5)]
    await paused_with(dispatcher, a + b)
    first = [lease.job_id for _ in range(12) for lease in await dispatcher.pop(["q"], 1, 60_000, "w")]
    assert {s.job_id for s in b} <= set(first)
    # Each key is first in, first out within itself.
    rest = [lease.job_id for lease in await dispatcher.pop(["q"], 1000, 60_000, "w")]
    order = first + rest
    assert [i for i in order if i in {s.job_id for s in a}] == [s.job_id for s in a]
    assert [i for i in order if i in {s.job_id for s in b}] == [s.job_id for s in b]


async def test_keyless_jobs_share_one_key_and_weights_set_the_shares(dispatcher: Dispatcher) -> None:
    plain = [job() for _ in range(50)]
    heavy = [job(fairness_key="heavy") for _ in range(200)]
    await paused_with(dispatcher, plain + heavy, DispatchConfig(fairness_weights={"heavy": 3}))
    first = [lease.job_id for lease in await dispatcher.pop(["q"], 40, 60_000, "w")]
    heavy_ids = {s.job_id for s in heavy}
    assert 28 <= sum(1 for i in first if i in heavy_ids) <= 32  # weight 3 against the default key's 1
    keyless = [i for i in first if i not in heavy_ids]
    assert keyless == [s.job_id for s in plain[:len(keyless)]]  # the default key stays first in, first out


async def test_aging_moves_an_old_low_job_ahead_of_younger_higher_ones(dispatcher: Dispatcher) -> None:
    await dispatcher.configure("q", DispatchConfig(aging=Aging(every_ms=400, step=6)))
    old = job(priority=0)
    await dispatcher.push([(old, 0)])
    assert await dispatcher.age_due(["q"]) == 0  # not due yet: Redis TIME decides
    await asyncio.sleep(0.2)  # the behaviour under test: time spent waiting
    younger = [job(priority=5) for _ in range(5)]
    await dispatcher.push([(s, 0) for s in younger])
    [state] = (await dispatcher.wait_states([WaitingJob("q", old.job_id)])).values()
    assert state.ahead == 5
    await asyncio.sleep(0.25)
    assert await dispatcher.age_due(["q"]) == 1  # the old one only: 0 -> 6, above the younger ones' 5
    order = [lease.job_id for lease in await dispatcher.pop(["q"], 10, 60_000, "w")]
    assert order == [old.job_id] + [s.job_id for s in younger]
    assert await dispatcher.redis.zcard(dispatcher.keys.queue("q").aging) == 0  # started: no longer aging
