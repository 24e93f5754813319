"""The per-client buffer: bounded, progress coalesced, closed on overflow."""

from __future__ import annotations

import asyncio

import pytest

from services.notifier.buffer import CLOSE_TOO_SLOW, BufferClosed, ClientBuffer


def test_messages_come_out_in_order() -> None:
    buf = ClientBuffer(10)
    for text in ("a", "b", "c"):
        assert buf.put(text)
    assert buf.take(2) == ["a", "b"]
    assert buf.take(5) == ["c"]
    assert buf.take(5) == []


def test_progress_of_one_job_is_coalesced_while_queued() -> None:
    buf = ClientBuffer(10)
    buf.put("p1", "progress:j1")
    buf.put("other", None)
    buf.put("p2", "progress:j1")
    buf.put("q1", "progress:j2")
    buf.put("p3", "progress:j1")
    # Latest wins and keeps the first one's place; other jobs are untouched.
    assert buf.take(10) == ["p3", "other", "q1"]
    # Once sent, a new progress message queues afresh.
    buf.put("p4", "progress:j1")
    assert buf.take(10) == ["p4"]


def test_coalescing_does_not_count_against_the_limit() -> None:
    buf = ClientBuffer(2)
    buf.put("x")
    buf.put("p1", "k")
    for i in range(100):
        assert buf.put(f"p{i}", "k")
    assert len(buf) == 2 and buf.close_code is None


def test_overflow_closes_with_4008_and_drops_the_backlog() -> None:
    buf = ClientBuffer(3)
    assert all(buf.put(str(i)) for i in range(3))
    assert buf.pressured
    assert not buf.put("one too many")
    assert buf.close_code == 4008 and buf.close_reason.startswith("too slow")
    assert buf.closed.is_set() and len(buf) == 0
    assert not buf.put("later")
    with pytest.raises(BufferClosed) as info:
        buf.take()
    assert info.value.code == CLOSE_TOO_SLOW


def test_first_close_reason_wins() -> None:
    buf = ClientBuffer(3)
    buf.close(1012, "service restarting")
    buf.close(4008, "too slow")
    assert (buf.close_code, buf.close_reason) == (1012, "service restarting")


async def test_get_waits_for_a_message_and_wakes_on_close() -> None:
    buf = ClientBuffer(3)
    getter = asyncio.create_task(buf.get())
    await asyncio.sleep(0.01)  # the behaviour under test: get() keeps waiting while the buffer is empty
    assert not getter.done()
    buf.put("hello")
    assert await asyncio.wait_for(getter, 1) == "hello"

    getter = asyncio.create_task(buf.get())
    await asyncio.sleep(0.01)  # as above: parked in get() when the close comes
    assert not getter.done()
    buf.close(1012, "bye")
    with pytest.raises(BufferClosed):
        await asyncio.wait_for(getter, 1)


async def test_cancelled_wait_takes_nothing() -> None:
    buf = ClientBuffer(3)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(buf.wait(), 0.01)
    buf.put("kept")
    assert buf.take() == ["kept"]
