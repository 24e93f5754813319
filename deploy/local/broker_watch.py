"""Keeping the memory-only broker up: restart it when it dies, topics first, before services reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from deploy.local.servers import KafkaBroker, ServerError
from shared.backoff import Backoff

log = logging.getLogger(__name__)


def restart_on_crash(
    broker: KafkaBroker, on_restart: Callable[[], None] | None, backoff_initial_s: float, backoff_max_s: float
) -> Coroutine[Any, Any, None]:
    """Watch `broker` from now on; the returned coroutine (run it as a task, until cancelled) starts
    it again after every unexpected exit, retrying with backoff.

    The exit listener is registered here, synchronously, so a crash right after the call is not
    missed. A deliberate `broker.stop()` (the outage tests) is left alone; a kill counts as a crash.
    """
    loop = asyncio.get_running_loop()
    crashes: asyncio.Queue[int] = asyncio.Queue()

    def on_exit(rc: int, expected: bool) -> None:  # called from the broker's reaper thread
        if not expected:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(crashes.put_nowait, rc)

    broker.add_exit_listener(on_exit)
    return _restart_loop(broker, crashes, on_exit, on_restart, backoff_initial_s, backoff_max_s)


async def _restart_loop(
    broker: KafkaBroker, crashes: asyncio.Queue[int], on_exit: Callable[[int, bool], None],
    on_restart: Callable[[], None] | None, backoff_initial_s: float, backoff_max_s: float,
) -> None:
    # No jitter: one broker, and the log says exactly when it is tried again.
    backoff = Backoff(backoff_initial_s, backoff_max_s, jitter=False)
    try:
        while True:
            rc = await crashes.get()
            backoff.reset()
            while not broker.is_running():
                log.warning("kafka broker exited with rc %s; restarting it and re-creating %d topics",
                            rc, len(broker.topics))
                try:
                    # start() re-creates the known topics before returning: before any service
                    # reconnects and writes into a ghost topic.
                    await asyncio.to_thread(broker.start)
                    if on_restart is not None:
                        on_restart()
                except ServerError:
                    delay = backoff.next_delay()
                    log.exception("kafka broker restart failed; retrying in %.1fs", delay)
                    await asyncio.sleep(delay)
    finally:
        broker.remove_exit_listener(on_exit)
