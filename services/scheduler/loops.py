"""Periodic work that waits on the stop event between runs and survives outages of its servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Outages of Postgres or Redis: log and try again next time. Anything else is a bug and
# crashes the task, which stops the service loudly.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, RedisError, OSError, TimeoutError,
)


async def run_every(
    name: str,
    interval_s: float,
    stop: asyncio.Event,
    tick: Callable[[], Awaitable[bool]],
) -> None:
    """Call `tick` every `interval_s` until `stop` is set; a tick answering True (more work) runs again at once."""
    failures = 0
    while not stop.is_set():
        more = False
        try:
            more = await tick()
            failures = 0
        except TRANSIENT as exc:
            failures += 1
            # Say it loudly once, then quietly while the outage lasts.
            level = logging.WARNING if failures == 1 or failures % 50 == 0 else logging.DEBUG
            log.log(level, "%s failed (%d in a row): %r", name, failures, exc)
        if more:
            await asyncio.sleep(0)  # let other tasks run between full batches
            continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
