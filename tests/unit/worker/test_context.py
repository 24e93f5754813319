"""The job context: cancel signal, coalesced progress, and what a failing progress sink leads to."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from services.worker.context import CancelSignal, Report
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
    seen = ProgressLog()

    async def slow_sink(report: Report) -> None:
        await seen(report)
        await gate.wait()

    ctx = make_ctx(make_spec(), sink=slow_sink)
    await ctx.report_progress(10)
    await seen.wait_for(1)  # 10 is now in flight
    for p in (20, 30, 40):
        await ctx.report_progress(p)
    gate.set()
    await seen.wait_for(2)
    # 20 and 30 were superseded while 10 was in flight (the sink records in send order).
    assert [p for p, _ in seen.reports] == [10, 40]
    await ctx.close()


async def test_progress_is_clamped_to_0_100() -> None:
    log = ProgressLog()
    ctx = make_ctx(make_spec(), sink=log)
    await ctx.report_progress(150, "over")
    await log.wait_for(1)
    await ctx.report_progress(-3)
    await log.wait_for(2)
    assert log.reports == [(100.0, "over"), (0.0, None)]
    await ctx.close()


def _dropped() -> float:
    return REGISTRY.get_sample_value("conveyor_worker_progress_dropped_total") or 0.0


async def test_a_failing_sink_is_counted_and_logged_and_later_reports_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered = ProgressLog()
    failed = asyncio.Event()

    async def kafka_down_once(report: Report) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("kafka down")
        await delivered(report)

    spec = make_spec()
    ctx = make_ctx(spec, sink=kafka_down_once)
    before = _dropped()
    with caplog.at_level(logging.DEBUG, logger="services.worker.context"):
        await ctx.report_progress(5)  # the handler is never disturbed: no raise here
        await asyncio.wait_for(failed.wait(), 2)
        await ctx.report_progress(6)
        await delivered.wait_for(1)

    # The failed report is dropped, not retried: only the next one arrives.
    assert delivered.reports == [(6.0, None)]
    assert _dropped() == before + 1
    [record] = [r for r in caplog.records if r.name == "services.worker.context"]
    assert "kafka down" in record.getMessage()
    assert (record.job_id, record.queue, record.attempt, record.worker_id) == (  # type: ignore[attr-defined]
        str(spec.job_id), "q", 1, "w-test")
    await ctx.close()


async def test_progress_carries_current_total_stage_and_message() -> None:
    log = ProgressLog()
    ctx = make_ctx(make_spec(), sink=log)
    await ctx.progress(3, 12, stage="download", message="3 of 12 files")
    await log.wait_for(1)
    assert log.sent[0].progress == {
        "percent": 25.0, "current": 3.0, "total": 12.0, "stage": "download", "message": "3 of 12 files",
    }
    await ctx.progress(5, 0)  # an unknown total reads as 0 %, never a division error
    await log.wait_for(2)
    assert log.sent[-1].progress is not None and log.sent[-1].progress["percent"] == 0.0
    await ctx.close()


async def test_log_lines_are_bounded_and_batched_while_a_report_is_in_flight() -> None:
    gate = asyncio.Event()
    seen = ProgressLog()

    async def slow_sink(report: Report) -> None:
        await seen(report)
        await gate.wait()

    ctx = make_ctx(make_spec(attempt=2), sink=slow_sink)
    ctx.log("first")
    await asyncio.sleep(0.01)  # "first" is now in flight
    for n in range(250):
        ctx.log(f"line {n}" + "x" * (2000 if n == 249 else 0))
    gate.set()
    await ctx.flush()
    assert len(seen.sent) == 2
    second = seen.sent[1]
    assert len(second.logs) == 200 and second.dropped_logs == 50  # the newest 200 are kept
    assert second.logs[0]["message"] == "line 50" and second.logs[0]["attempt"] == 2
    assert len(second.logs[-1]["message"]) == 1000  # a line is bounded too
    assert seen.lines[0] == "first"
    await ctx.close()


async def test_checkpoint_waits_for_its_report_and_becomes_the_state() -> None:
    log = ProgressLog()
    ctx = make_ctx(make_spec(checkpoint_state={"page": 3}), sink=log)
    assert ctx.checkpoint_state == {"page": 3} and not ctx.checkpointed  # left by an earlier attempt
    await ctx.checkpoint({"page": 4})
    assert [r.checkpoint for r in log.sent] == [{"page": 4}]  # sent before checkpoint() returned
    assert ctx.checkpoint_state == {"page": 4} and ctx.checkpointed
    await ctx.close()


async def test_checkpoint_refuses_what_is_not_json_or_too_large() -> None:
    ctx = make_ctx(make_spec(), sink=ProgressLog())
    with pytest.raises(ValueError, match="not JSON"):
        await ctx.checkpoint({"when": object()})
    with pytest.raises(ValueError, match="bytes"):
        await ctx.checkpoint({"blob": "x" * 70_000})
    assert ctx.checkpoint_state is None and not ctx.checkpointed
    await ctx.close()
