"""A worker's fetch loop (services/worker/fetcher.py) against a real Valkey: it does not spin on a
paused queue, starts its backlog promptly on resume, and follows a rate window without polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from services.worker.fetcher import Fetcher
from shared.dispatch.config import DispatchConfig, Limit
from shared.dispatch.protocol import Dispatcher, Lease
from tests.fixtures.polling import poll_until
from tests.integration.dispatch.support import job


class Slots:
    """The executor's side of the fetch loop only: slots, and the leases it was handed (released at once)."""

    def __init__(self, dispatcher: Dispatcher, slots: int) -> None:
        self.dispatcher = dispatcher
        self.slots = slots
        self.started: list[Lease] = []

    def free_slots(self) -> int:
        return self.slots

    async def wait_for_slot(self) -> None:
        await asyncio.sleep(3600)

    def start(self, leases: Sequence[Lease], *, leased_at: float | None = None) -> None:
        self.started += leases
        asyncio.get_running_loop().create_task(self.dispatcher.release(leases))


@pytest.fixture
async def fetching(dispatcher: Dispatcher) -> AsyncIterator[tuple[Slots, Dispatcher]]:
    slots = Slots(dispatcher, 10)
    stop = asyncio.Event()
    fetcher = Fetcher(dispatcher, slots, worker_id="w", queues=["q"], lease_ms=60_000,  # type: ignore[arg-type]
                      refresh_interval_s=60, stopping=stop)
    task = asyncio.create_task(fetcher.run())
    yield slots, dispatcher
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_paused_backlog_costs_no_pops_and_starts_promptly_on_resume(
    fetching: tuple[Slots, Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    slots, d = fetching
    pops = 0
    take = d.take

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal pops
        pops += 1
        return await take(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(d, "take", counted)
    await d.configure("q", DispatchConfig(paused=True))  # 64 wake tokens, then the pause holds
    await asyncio.sleep(0.3)
    for _ in range(20):
        await d.push([(job(), 0) for _ in range(5)])
    before = pops
    await asyncio.sleep(1.0)  # the behaviour under test: a second with a paused backlog
    assert pops - before <= 2  # its BLPOP timeouts at most, never a pop per push or a spin
    assert slots.started == []
    await d.configure("q", DispatchConfig())
    await poll_until(lambda: asyncio.sleep(0, len(slots.started)), lambda n: n == 100, timeout_s=2, every_s=0.02)


async def test_a_rate_limited_queue_starts_as_its_window_frees(fetching: tuple[Slots, Dispatcher]) -> None:
    slots, d = fetching
    await d.configure("q", DispatchConfig(rate_limit=Limit(2, 400)))
    await d.push([(job(), 0) for _ in range(6)])
    await poll_until(lambda: asyncio.sleep(0, len(slots.started)), lambda n: n == 6, timeout_s=3, every_s=0.02)
    starts = sorted(lease.started_ms for lease in slots.started)
    assert starts[2] - starts[0] >= 400 and starts[4] - starts[2] >= 400
    assert starts[5] - starts[0] < 400 * 2 + 300  # woken by the window, not by a 1 s poll
