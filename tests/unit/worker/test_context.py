"""The job context: cancel signal and coalesced progress."""

from __future__ import annotations

import asyncio

from services.worker.context import CancelSignal
from tests.unit.worker.helpers import ProgressLog, make_ctx, make_spec


async def test_cancel_signal_is_a_flag_and_an_awaitable() -> None:
    signal = CancelSignal()
    assert not signal and not signal.is_set()
    waiter = asyncio.create_task(signal.wait())
    awaited = asyncio.ensure_future(signal)  # `await ctx.cancelled` form
    signal.set("cancelled")
    signal.set("shutdown")  # the first reason sticks
    await asyncio.wait_for(asyncio.gather(waiter, awaited), 1)
    assert signal and signal.reason == "cancelled"


async def test_progress_reports_coalesce_while_one_is_in_flight() -> None:
    gate = asyncio.Event()
    seen: list[float] = []

    async def slow_sink(percent: float, message: str | None) -> None:
        seen.append(percent)
        await gate.wait()

    ctx = make_ctx(make_spec(), sink=slow_sink)
    await ctx.report_progress(10)
    await asyncio.sleep(0.01)  # 10 is now in flight
    for p in (20, 30, 40):
        await ctx.report_progress(p)
    gate.set()
    await asyncio.sleep(0.01)
    assert seen == [10, 40]  # 20 and 30 were superseded while 10 was in flight
    await ctx.close()


async def test_progress_clamps_and_a_failing_sink_does_not_raise() -> None:
    log = ProgressLog()
    ctx = make_ctx(make_spec(), sink=log)
    await ctx.report_progress(150, "over")
    await asyncio.sleep(0.01)
    assert log.reports == [(100.0, "over")]

    async def broken(percent: float, message: str | None) -> None:
        raise RuntimeError("kafka down")

    ctx = make_ctx(make_spec(), sink=broken)
    await ctx.report_progress(5)
    await asyncio.sleep(0.01)
    await ctx.close()
