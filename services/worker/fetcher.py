"""The fetch loop: lease as many jobs as there are free slots, else wait for a wake signal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from services.worker.executor import Executor
from shared.backoff import Backoff
from shared.dispatch.protocol import Dispatcher
from shared.logs import job_fields
from shared.waiting import unless

log = logging.getLogger(__name__)

WAKE_WAIT_S = 1.0
# The shortest wait for a rate window (BLPOP's timeout resolution is a millisecond; this spares Redis).
MIN_WAIT_S = 0.005
ERROR_BACKOFF_FIRST_S = 0.1
ERROR_BACKOFF_MAX_S = 5.0


class Fetcher:
    """Pops work into the executor until `stopping` is set; never sleep-polls.

    With no configured queues it serves every queue Redis knows, re-read every
    `refresh_interval_s` and also right after a wake that found nothing in the known
    queues (the wake may be the first job of a queue this worker has not seen yet).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        executor: Executor,
        *,
        worker_id: str,
        queues: Sequence[str],
        lease_ms: int,
        refresh_interval_s: float,
        stopping: asyncio.Event,
    ) -> None:
        self._dispatcher = dispatcher
        self._executor = executor
        self._worker_id = worker_id
        self._log_fields = job_fields(worker_id=worker_id)
        self._dynamic = not queues
        self._queues: list[str] = list(queues)
        self._lease_ms = lease_ms
        self._refresh_interval_s = refresh_interval_s
        self._next_refresh = 0.0
        self._stopping = stopping
        self._pops = 0
        self._woke = False

    @property
    def serving(self) -> list[str]:
        """The queues this worker currently pops from."""
        return list(self._queues)

    @property
    def all_queues(self) -> bool:
        """Whether this worker follows every queue (no configured list)."""
        return self._dynamic

    async def run(self) -> None:
        """Fetch until stopped; Redis errors back off and retry rather than kill the worker."""
        backoff = Backoff(ERROR_BACKOFF_FIRST_S, ERROR_BACKOFF_MAX_S)
        while not self._stopping.is_set():
            try:
                await self._step()
                backoff.reset()
            except (RedisError, OSError) as exc:
                log.warning("fetch failed, backing off: %r", exc, extra=self._log_fields)
                await backoff.sleep(self._stopping)

    async def _step(self) -> None:
        free = self._executor.free_slots()
        if free <= 0:
            # Not raced against `stopping` (that costs a task per wait, on the busiest path):
            # the service's drain calls executor.stop_intake(), which ends this wait.
            await self._executor.wait_for_slot()
            return
        if self._dynamic and time.monotonic() >= self._next_refresh:
            await self._refresh()
        taken, wait_ms = await self._pop(free)
        woke, self._woke = self._woke, False
        if taken >= free:
            return  # there may be more: pop again as soon as slots free up
        if taken == 0 and woke and self._dynamic and await self._refresh():
            return  # the wake was for a queue we did not know yet: pop it now
        # Every served queue is empty or held back (paused, at a limit): block until a push,
        # promotion, release or resume signals work, or a rate window frees a slot, or the stop.
        # Pushes into a paused queue leave no wake token, so a paused backlog keeps no one spinning.
        # A Redis error propagates, for run() to back off on.
        timeout = WAKE_WAIT_S if wait_ms <= 0 else max(MIN_WAIT_S, min(WAKE_WAIT_S, wait_ms / 1000))
        await unless(self._stopping, self._dispatcher.wait_for_work(timeout))
        self._woke = True

    async def _pop(self, count: int) -> tuple[int, int]:
        """Lease up to `count` jobs into the executor; returns how many, and pop's wait hint (Taken.wait_ms)."""
        if not self._queues or count <= 0:
            return 0, 0
        self._pops += 1
        # The leases run from before the pop was sent: a worker frozen between the pop and the
        # start of its jobs (SIGSTOP, a long GC pause) must not count a lease as fresh that Redis
        # may already have expired and handed to another worker.
        asked = time.monotonic()
        taken = await self._dispatcher.take(
            self._queues, count, self._lease_ms, token_base=f"{self._worker_id}:{self._pops}"
        )
        if taken.leases:
            self._executor.start(taken.leases, leased_at=asked)
        return len(taken.leases), taken.wait_ms

    async def _refresh(self) -> bool:
        """Re-read the queue list; True if it changed."""
        queues = await self._dispatcher.queues()
        self._next_refresh = time.monotonic() + self._refresh_interval_s
        changed = queues != self._queues
        if changed:
            log.info("serving queues: %s", ", ".join(queues) or "(none yet)", extra=self._log_fields)
            self._queues = queues
        return changed
