"""Coalescing concurrent calls into batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.worker.coalescer import Coalescer
from tests.fixtures.polling import eventually


async def test_calls_made_together_share_one_flush_and_later_ones_the_next() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> None:
        batches.append(list(items))
        await gate.wait()

    c: Coalescer[int] = Coalescer("t", flush)
    first = [asyncio.create_task(c.submit(i)) for i in range(5)]
    await eventually(lambda: len(batches) == 1, timeout_s=2, every_s=0.001)
    second = [asyncio.create_task(c.submit(i)) for i in range(5, 8)]
    await asyncio.sleep(0.01)  # the behaviour under test: no second flush starts meanwhile
    assert batches == [[0, 1, 2, 3, 4]]  # the second group waits for the flush in flight
    gate.set()
    await asyncio.gather(*first, *second)
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7]]


async def test_a_failed_flush_fails_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def flush(items: Sequence[int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("down")

    c: Coalescer[int] = Coalescer("t", flush)
    results = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await c.submit(3)
    assert calls == 2


async def test_max_batch_splits_and_close_cancels_waiters() -> None:
    sizes: list[int] = []
    block = asyncio.Event()

    async def flush(items: Sequence[int]) -> None:
        sizes.append(len(items))
        await block.wait()

    c: Coalescer[int] = Coalescer("t", flush, max_batch=2)
    waiters = [asyncio.create_task(c.submit(i)) for i in range(3)]
    await eventually(lambda: sizes == [2], timeout_s=2, every_s=0.001)
    await c.close()
    for w in waiters:
        with pytest.raises(asyncio.CancelledError):
            await w
    assert sizes == [2]


async def test_several_flushes_may_run_at_once_when_allowed() -> None:
    active = 0
    peak = 0
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1

    c: Coalescer[int] = Coalescer("t", flush, max_in_flight=2)
    waiters = [asyncio.create_task(c.submit(0))]
    await eventually(lambda: active == 1, timeout_s=2, every_s=0.001)
    waiters.append(asyncio.create_task(c.submit(1)))  # a later tick: a batch of its own
    await eventually(lambda: active == 2, timeout_s=2, every_s=0.001)
    waiters += [asyncio.create_task(c.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)  # the behaviour under test: no third flush starts meanwhile
    assert peak == 2
    gate.set()
    await asyncio.gather(*waiters)
    assert peak == 2
