"""Wait for the first of several things, and never leave the others running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

# How long a cancelled loser may take to unwind (redis-py can sit on a cancel mid-command).
LOSER_UNWIND_S = 5.0


async def first_of(*awaitables: Awaitable[Any], timeout_s: float | None = None) -> list[asyncio.Future[Any]]:
    """Run them until the first finishes (or the timeout); cancel and await the rest.

    Returns the finished futures in argument order (empty on timeout); their results or
    exceptions are the caller's to read.
    """
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(futures, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        losers = [f for f in futures if not f.done()]
        for f in losers:
            f.cancel()
        if losers:
            await asyncio.wait(losers, timeout=LOSER_UNWIND_S)
    return [f for f in futures if f.done() and not f.cancelled()]


async def unless(event: asyncio.Event, awaitable: Awaitable[T]) -> tuple[bool, T | None]:
    """Await `awaitable` unless `event` is set first: `(True, result)`, or `(False, None)` if the event won."""
    work = asyncio.ensure_future(awaitable)
    if event.is_set():
        work.cancel()
        await asyncio.wait({work}, timeout=LOSER_UNWIND_S)
        return False, None
    done = await first_of(work, event.wait())
    if work in done:
        return True, work.result()
    return False, None


async def set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True as soon as it is set, False when the time is up."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def every(interval_s: float, stopping: asyncio.Event) -> AsyncIterator[None]:
    """One turn per `interval_s` (the first after one interval) until `stopping` is set."""
    while not await set_within(stopping, interval_s):
        yield
