"""Keeping leases alive, noticing cancel flags, and the worker's registry entry in Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from redis.exceptions import RedisError

from services.worker.executor import Executor
from shared.dispatch.protocol import Dispatcher, JobRef, now_ms
from shared.logs import job_fields

log = logging.getLogger(__name__)

# A user's cancel must reach a running handler within a second (issue 9): poll the cancel flags
# of the held jobs four times a second. Bounded cost: one pipelined ZMSCORE per queue held, and
# only while the worker holds a job whose handler runs.
CANCEL_CHECK_S = 0.25
ERROR_RETRY_S = 1.0
REGISTRY_CALL_TIMEOUT_S = 2.0


class Heartbeat:
    """Every lease_ms/3: extend all leases and refresh the registry entry; every 250 ms: check cancel flags."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        executor: Executor,
        *,
        worker_id: str,
        lease_ms: int,
        describe: Callable[[], dict[str, Any]],
        cancel_check_s: float = CANCEL_CHECK_S,
    ) -> None:
        self._dispatcher = dispatcher
        self._executor = executor
        self._worker_id = worker_id
        self._log_fields = job_fields(worker_id=worker_id)
        self._lease_ms = lease_ms
        self.interval_s = lease_ms / 3000
        self._describe = describe
        self._cancel_check_s = cancel_check_s

    @property
    def entry_ttl_ms(self) -> int:
        """The registry entry outlives three missed heartbeats, no more."""
        return int(self.interval_s * 3000)

    async def run(self) -> None:
        """Loop until cancelled (the service cancels it after the drain: leases need it till then)."""
        delay = self.interval_s
        while True:
            await asyncio.sleep(delay)
            ok = await self._guard("heartbeat", self.beat())
            delay = self.interval_s if ok else min(self.interval_s, ERROR_RETRY_S)

    async def watch_cancels(self) -> None:
        """Loop until cancelled: stop the handlers of jobs flagged cancelled, within CANCEL_CHECK_S.

        Its own loop, so a slow heartbeat never delays a cancel.
        """
        while True:
            await asyncio.sleep(self._cancel_check_s)
            await self._guard("cancel check", self.check_cancels())

    async def beat(self) -> None:
        """Extend every held lease; leases another worker took are abandoned."""
        leases = self._executor.leases()
        if leases:
            began = time.monotonic()
            lost = await self._dispatcher.heartbeat(leases, self._lease_ms)
            self._executor.extended(leases, lost, began)
            if lost:
                self._executor.mark_lost(lost, {lease.job_id: lease.token for lease in leases})
        await self.register()

    async def check_cancels(self) -> None:
        """Stop the handlers of jobs flagged cancelled."""
        ids = self._executor.cancellable_ids()
        if ids:
            queues = {lease.job_id: lease.spec.queue for lease in self._executor.leases()}
            flagged = await self._dispatcher.cancelled([JobRef(queues[i], i) for i in ids if i in queues])
            if flagged:
                self._executor.cancel(flagged)

    async def register(self) -> None:
        """Write this worker's entry (expires unless refreshed) and its last-seen time."""
        keys = self._dispatcher.keys
        doc = orjson.dumps(self._describe())
        async with self._dispatcher.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.worker(self._worker_id), doc, px=self.entry_ttl_ms)
            pipe.zadd(keys.workers, {self._worker_id: now_ms()})
            await asyncio.wait_for(pipe.execute(), timeout=REGISTRY_CALL_TIMEOUT_S)

    async def unregister(self) -> None:
        """Remove the entry on a clean stop (best effort: it expires anyway)."""
        keys = self._dispatcher.keys
        try:
            async with self._dispatcher.redis.pipeline(transaction=False) as pipe:
                pipe.delete(keys.worker(self._worker_id))
                pipe.zrem(keys.workers, self._worker_id)
                await asyncio.wait_for(pipe.execute(), timeout=REGISTRY_CALL_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not remove the worker registry entry: %r", exc, extra=self._log_fields)

    async def _guard(self, what: str, step: Coroutine[Any, Any, None]) -> bool:
        try:
            await step
            return True
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("%s failed (will retry): %r", what, exc, extra=self._log_fields)
            return False


def default_worker_id() -> str:
    """`host-pid`: unique per process, readable in the dashboard."""
    return f"{socket.gethostname()}-{os.getpid()}"
