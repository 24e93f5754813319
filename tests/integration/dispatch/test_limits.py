"""Limits enforced where work is taken (pop.lua) against a real Valkey: rate, concurrency, pause, wait states."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from shared.dispatch.config import DispatchConfig, Limit
from shared.dispatch.protocol import Dispatcher, Lease, now_ms
from shared.dispatch.records import WaitingJob
from shared.dispatch.waits import ConcurrencyHold, RateHold
from tests.integration.dispatch.support import drain, job, paused_with


def most_in_any_window(starts: list[int], period_ms: int) -> int:
    """The most starts in any window [t, t + period) : every window that begins at a start is checked
    (a window holding the most starts can always be slid to begin at its first one)."""
    ordered = sorted(starts)
    return max(sum(1 for u in ordered if t <= u < t + period_ms) for t in ordered)


async def test_a_queue_rate_limit_holds_in_every_window_across_workers(dispatcher: Dispatcher) -> None:
    await paused_with(dispatcher, [job() for _ in range(20)], DispatchConfig(rate_limit=Limit(5, 1000)))
    began = time.monotonic()
    started: list[Lease] = []
    await asyncio.gather(*(drain(dispatcher, "q", 20, into=started) for _ in range(3)))  # three "workers"
    took = time.monotonic() - began
    starts = [lease.started_ms for lease in started]
    assert len(starts) == 20 and len({lease.job_id for lease in started}) == 20
    assert most_in_any_window(starts, 1000) == 5
    assert 3000 <= max(starts) - min(starts) < 4500  # 5 at 0, 1, 2 and 3 s: the allowed rate, no less
    assert took < 6


async def test_a_limited_key_holds_back_neither_other_keys_nor_the_pop(dispatcher: Dispatcher) -> None:
    config = DispatchConfig(key_rate_limit=Limit(5, 60_000))
    backlog = [job(rate_limit_key="A") for _ in range(5000)]
    other = [job(rate_limit_key="B") for _ in range(5)]
    await paused_with(dispatcher, backlog + other, config)
    first = await dispatcher.take(["q"], 20, 60_000, "w")
    assert [lease.job_id for lease in first.leases] == [s.job_id for s in backlog[:5] + other]
    # A is held: its backlog waits (nothing dropped, order kept), and pop neither returns it nor scans it.
    began = time.perf_counter()
    again = await dispatcher.take(["q"], 20, 60_000, "w")
    assert again.leases == [] and 55_000 < again.wait_ms <= 60_000
    assert time.perf_counter() - began < 0.5
    assert await dispatcher.depth("q") == 4995
    late = job(rate_limit_key="C")
    await dispatcher.push([(late, 0)])
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 20, 60_000, "w")] == [late.job_id]
    [state] = (await dispatcher.wait_states([WaitingJob("q", backlog[5].job_id, "A")])).values()
    assert state.rate == RateHold("A", first.leases[0].started_ms + 60_000) and state.ready


async def test_concurrency_never_exceeds_its_limit_and_every_lease_end_frees_a_slot(dispatcher: Dispatcher) -> None:
    specs = [job() for _ in range(8)]
    await paused_with(dispatcher, specs, DispatchConfig(concurrency=2))
    a, b = await dispatcher.pop(["q"], 5, 60_000, "w")
    refused = await dispatcher.take(["q"], 5, 60_000, "w")
    assert refused.leases == [] and refused.wait_ms == -2
    [state] = (await dispatcher.wait_states([WaitingJob("q", specs[2].job_id)])).values()
    assert state.concurrency == ConcurrencyHold(None, 2, 2)
    # Released by its worker (completion, failure, cancel all end so) ...
    await dispatcher.redis.delete(dispatcher.keys.wake)
    assert await dispatcher.release([a]) == 1
    assert await dispatcher.redis.llen(dispatcher.keys.wake) == 1  # a waiting worker is woken for the slot
    [c] = await dispatcher.pop(["q"], 5, 60_000, "w")
    # ... replaced by the next attempt's push (a timeout, or the scheduler after an expired lease) ...
    assert await dispatcher.push([(b.spec.model_copy(update={"attempt": 2}), now_ms() + 60_000)]) == [True]
    [d] = await dispatcher.pop(["q"], 5, 60_000, "w")
    # ... or an expired lease the scheduler released.
    await dispatcher.redis.zadd(dispatcher.keys.queue("q").leases, {str(c.job_id): 1}, xx=True)
    [dead] = await dispatcher.expired(["q"])
    assert await dispatcher.release([dead.lease]) == 1
    assert len(await dispatcher.pop(["q"], 5, 60_000, "w")) == 1
    assert await dispatcher.pop(["q"], 5, 60_000, "w") == []
    del d


async def test_concurrency_stays_bounded_under_50_concurrent_workers(dispatcher: Dispatcher, redis: Redis) -> None:
    await paused_with(dispatcher, [job(concurrency_key=f"k{i % 3}") for i in range(150)],
                      DispatchConfig(concurrency=4, key_concurrency=1))
    active = peak = done = 0

    async def worker(n: int) -> None:
        nonlocal active, peak, done
        k = 0
        while done < 150:
            k += 1
            taken = await dispatcher.take(["q"], 2, 60_000, f"w{n}.{k}")
            active += len(taken.leases)
            peak = max(peak, active)
            keys = [lease.spec.concurrency_key for lease in taken.leases]
            assert len(set(keys)) == len(keys)
            await asyncio.sleep(0.001)
            active -= len(taken.leases)  # before the release reaches Redis: never above Redis' count
            done += len(taken.leases)
            await dispatcher.release(taken.leases)
            if not taken.leases:
                await asyncio.sleep(0.002)

    async def watch() -> int:
        most = 0
        while done < 150:
            most = max(most, int(await redis.zcard(dispatcher.keys.queue("q").leases)))
            await asyncio.sleep(0)
        return most

    watching = asyncio.create_task(watch())
    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(50))), 60)
    watched = await watching
    assert peak <= 3 and watched <= 3  # 3 keys of one slot each under a queue limit of 4
    assert await redis.hlen(dispatcher.keys.queue("q").running) == 0  # every slot given back


async def test_a_key_concurrency_slot_freed_by_release_starts_the_held_key_at_once(dispatcher: Dispatcher) -> None:
    k1, k2, other = job(concurrency_key="K"), job(concurrency_key="K"), job(concurrency_key="L")
    await paused_with(dispatcher, [k1, k2, other], DispatchConfig(key_concurrency=1))
    first = await dispatcher.pop(["q"], 5, 60_000, "w")
    assert [lease.job_id for lease in first] == [k1.job_id, other.job_id]
    [state] = (await dispatcher.wait_states([WaitingJob("q", k2.job_id, None, "K")])).values()
    assert state.concurrency == ConcurrencyHold("K", 1, 1)
    await dispatcher.release(first[:1])
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 5, 60_000, "w")] == [k2.job_id]


async def test_a_paused_queue_hands_out_nothing_and_wakes_no_one_until_resumed(dispatcher: Dispatcher) -> None:
    await dispatcher.configure("q", DispatchConfig(paused=True))
    await dispatcher.redis.delete(dispatcher.keys.wake)
    specs = [job() for _ in range(5)]
    await dispatcher.push([(s, 0) for s in specs])
    assert await dispatcher.redis.llen(dispatcher.keys.wake) == 0  # no token: no worker spins on it
    held = await dispatcher.take(["q"], 5, 60_000, "w")
    assert held.leases == [] and held.wait_ms == -1
    [state] = (await dispatcher.wait_states([WaitingJob("q", specs[0].job_id)])).values()
    assert state.paused and state.ready and state.ahead == 0 and state.rate is None and state.concurrency is None
    # A worker serving several queues is not starved by the paused one's better-placed backlog.
    free = job("other", priority=0)
    await dispatcher.push([(free, 0)])
    assert [lease.job_id for lease in await dispatcher.pop(["q", "other"], 5, 60_000, "w")] == [free.job_id]
    await dispatcher.configure("q", DispatchConfig())
    assert await dispatcher.redis.llen(dispatcher.keys.wake) > 0  # the resume wakes the workers
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 5, 60_000, "w")] == [s.job_id for s in specs]


async def test_wait_states_report_a_rate_hold_only_while_the_window_is_full(dispatcher: Dispatcher) -> None:
    specs = [job() for _ in range(3)]
    await paused_with(dispatcher, specs, DispatchConfig(rate_limit=Limit(2, 600)))
    started = await dispatcher.pop(["q"], 5, 60_000, "w")
    assert len(started) == 2
    [state] = (await dispatcher.wait_states([WaitingJob("q", specs[2].job_id)])).values()
    assert state.rate == RateHold(None, started[0].started_ms + 600)
    await asyncio.sleep(0.65)  # the behaviour under test: the window sliding past the starts
    [state] = (await dispatcher.wait_states([WaitingJob("q", specs[2].job_id)])).values()
    assert state.rate is None
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 5, 60_000, "w")] == [specs[2].job_id]
