"""The shared service contract: idempotent stop, stop before start, soft stop then hard, closes in reverse."""

from __future__ import annotations

import asyncio

import pytest

from shared.backoff import Backoff
from shared.service import BaseService
from shared.settings import CommonSettings
from shared.waiting import first_of, unless


class _Probe(BaseService):
    name = "probe"

    def __init__(self, *, fail_setup: bool = False, stubborn: bool = False) -> None:
        super().__init__(CommonSettings(drain_timeout_s=0.2))
        self.log: list[str] = []
        self.fail_setup = fail_setup
        self.stubborn = stubborn
        self.finish = asyncio.Event()

    async def setup(self) -> None:
        async def opened(name: str) -> str:
            self.log.append(f"open {name}")
            return name

        async def close(name: str) -> None:
            self.log.append(f"close {name}")

        await self.open(opened("pool"), close=close)
        await self.open(opened("redis"), close=close)
        if self.fail_setup:
            raise RuntimeError("redis refused")
        self.spawn("loop", self._loop(), drain=self.finish.set)
        self.spawn("side", asyncio.Event().wait())

    async def _loop(self) -> None:
        if self.stubborn:
            await asyncio.Event().wait()
        await self.finish.wait()
        self.log.append("loop drained")


async def test_stop_before_start_and_twice() -> None:
    probe = _Probe()
    await probe.stop()
    await probe.stop()
    assert probe.log == []
    with pytest.raises(RuntimeError, match="started once"):
        await probe.start()


async def test_soft_stop_lets_drained_tasks_finish_then_closes_in_reverse() -> None:
    probe = _Probe()
    await probe.start()
    await asyncio.gather(probe.stop(), probe.stop())
    assert probe.log == ["open pool", "open redis", "loop drained", "close redis", "close pool"]
    assert probe.stopping.is_set()
    assert not probe.failed.is_set()


async def test_soft_stop_escalates_to_hard_stop_after_the_deadline() -> None:
    probe = _Probe(stubborn=True)
    await probe.start()
    await asyncio.wait_for(probe.stop(), timeout=5)
    assert "loop drained" not in probe.log
    assert probe.log[-2:] == ["close redis", "close pool"]


async def test_failed_setup_closes_what_it_opened() -> None:
    probe = _Probe(fail_setup=True)
    with pytest.raises(RuntimeError, match="redis refused"):
        await probe.start()
    assert probe.log == ["open pool", "open redis", "close redis", "close pool"]
    await probe.stop()


async def test_a_crashed_task_fails_the_service() -> None:
    probe = _Probe()
    await probe.start()

    async def boom() -> None:
        raise ValueError("boom")

    probe.spawn("boom", boom())
    await asyncio.wait_for(probe.failed.wait(), timeout=2)
    await probe.stop()


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.1, max_s=0.4, jitter=False)
    assert [backoff.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    backoff.reset()
    assert backoff.next_delay() == 0.1
    jittered = Backoff(initial_s=1.0, max_s=1.0)
    assert all(0.5 <= jittered.next_delay() <= 1.0 for _ in range(50))


async def test_backoff_sleep_returns_early_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(Backoff(initial_s=30).sleep(stop), timeout=1) is True


async def test_first_of_cancels_the_losers() -> None:
    slow = asyncio.ensure_future(asyncio.sleep(30))
    done = await first_of(asyncio.sleep(0, result="fast"), slow)
    assert [f.result() for f in done] == ["fast"]
    assert slow.cancelled()


async def test_unless_reports_which_won() -> None:
    stop = asyncio.Event()
    assert await unless(stop, asyncio.sleep(0, result=7)) == (True, 7)
    stop.set()
    assert await unless(stop, asyncio.sleep(30)) == (False, None)
