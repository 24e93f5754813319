"""The Redis steps the scheduler takes after a commit: release dead leases, forget stale copies, push.

Postgres commits first, Redis follows. A step that fails is logged and left to reconciliation,
which compares Redis against the committed rows; only the push is retried briefly first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence

from redis.exceptions import RedisError

from shared.backoff import Backoff
from shared.dispatch.protocol import Dispatcher, Forget, Lease
from shared.models import JobSpec

log = logging.getLogger(__name__)

TRANSIENT = (RedisError, OSError, TimeoutError)


class RedisSteps:
    """The post-commit Redis work of every scheduler transaction."""

    def __init__(self, dispatcher: Dispatcher, *, timeout_s: float, tries: int = 3) -> None:
        self.dispatcher = dispatcher
        self._timeout = timeout_s
        self._tries = tries

    async def push(
        self, specs: Sequence[tuple[JobSpec, int]], *, fresh: Collection[uuid.UUID] = frozenset()
    ) -> bool:
        """Push after commit (see Dispatcher.push); retried briefly, then left to reconciliation."""
        if not specs:
            return True
        backoff = Backoff(initial_s=0.1, max_s=1.6, factor=4, jitter=False)
        for attempt in range(1, self._tries + 1):
            try:
                await asyncio.wait_for(self.dispatcher.push(specs, fresh=fresh), timeout=self._timeout)
                return True
            except TRANSIENT as exc:
                if attempt == self._tries:
                    log.error("redis push of %d jobs failed (%r); reconciliation will repair", len(specs), exc)
                    return False
                delay = backoff.next_delay()
                log.warning("redis push failed (%r), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        return False

    async def forget(self, items: Sequence[Forget]) -> int:
        """Drop waiting copies Postgres says are stale; returns how many were dropped (best effort)."""
        if not items:
            return 0
        try:
            dropped = await asyncio.wait_for(self.dispatcher.forget(items), timeout=self._timeout)
        except TRANSIENT as exc:
            log.warning("could not forget %d stale redis jobs: %r", len(items), exc)
            return 0
        if dropped:
            log.info("forgot %d redis jobs Postgres no longer expects", dropped)
        return dropped

    async def release(self, leases: Sequence[Lease]) -> int:
        """Release dead leases (each only if it is still that lease); best effort: they are read again."""
        if not leases:
            return 0
        try:
            return await asyncio.wait_for(self.dispatcher.release(leases), timeout=self._timeout)
        except TRANSIENT as exc:
            log.warning("could not release %d expired leases: %r", len(leases), exc)
            return 0
