"""What a submission needs from its queue's config (maxLength, maxAttempts), cached per api replica.

The hot path must not pay a Postgres round trip per submission to learn that its queue has no
config: each replica keeps a snapshot of the whole `queues` table (it is small: one row per
configured queue). A change made through any replica reaches every other one at once through
LISTEN/NOTIFY (store.queues.NOTIFY_CHANNEL, sent in the change's transaction); the snapshot also
expires after a few seconds, so a lost listener connection delays a change by that much at most.
The replica that made a change drops its snapshot before it answers, so it sees the change at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.api.store import queues as store
from services.api.store.connections import connection
from shared.backoff import Backoff

log = logging.getLogger(__name__)

# How long a snapshot is trusted: short while no listener is up (the fallback), longer while one is
# (a notification then says when it changes; the TTL only guards against a bug).
TTL_S = 5.0
LISTENING_TTL_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# What a lost or refused connection raises (InterfaceError is not a PostgresError).
CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class QueueRules:
    """The submission-time parts of a queue's config (None: not set)."""

    max_length: int | None = None
    max_attempts: int | None = None


NO_RULES = QueueRules()


def rules_of(config: dict[str, Any]) -> QueueRules:
    """From a stored `queues.config`."""
    return QueueRules(config.get("maxLength"), config.get("maxAttempts"))


class QueueRulesCache:
    """`await get(queue)` -> QueueRules from a snapshot of `queues`, reloaded when stale or announced changed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._rules: dict[str, QueueRules] = {}
        self._fresh_until = 0.0  # time.monotonic(); 0: reload before the next use
        self._ttl_s = TTL_S
        # Bumped by every invalidation: a reload that started before one must not be trusted.
        self._generation = 0
        self._loading: asyncio.Future[None] | None = None

    async def get(self, queue: str) -> QueueRules:
        """The queue's rules (NO_RULES when it has no config)."""
        if time.monotonic() < self._fresh_until:
            return self._rules.get(queue, NO_RULES)
        await self._reload()
        return self._rules.get(queue, NO_RULES)

    async def get_many(self, queues: set[str]) -> dict[str, QueueRules]:
        """Rules of several queues from one snapshot."""
        if time.monotonic() >= self._fresh_until:
            await self._reload()
        return {q: self._rules.get(q, NO_RULES) for q in queues}

    def invalidate(self) -> None:
        """Reload before the next use (a change was committed, here or on another replica)."""
        self._generation += 1
        self._fresh_until = 0.0

    async def _reload(self) -> None:
        # One reload at a time: requests that find the snapshot stale together wait for the same one.
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(self._loaded)
        await asyncio.shield(self._loading)

    def _loaded(self, done: asyncio.Future[None]) -> None:
        self._loading = None
        if not done.cancelled():
            done.exception()  # retrieved here; the waiters re-raise it

    async def _load(self) -> None:
        generation = self._generation
        async with connection(self._pool) as conn:
            rows = await store.all_rows(conn)
        self._rules = {row.name: rules_of(row.config) for row in rows}
        if generation == self._generation:
            self._fresh_until = time.monotonic() + self._ttl_s
        # else: invalidated while loading; these rules may predate the change, so the next use reloads.

    async def listen(self, dsn: str, stop: asyncio.Event | None = None) -> None:
        """Invalidate on every NOTIFY of a queue change, reconnecting after failures, until cancelled or `stop`."""
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while stop is None or not stop.is_set():
            try:
                conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
            except CONNECTION_ERRORS as exc:
                log.warning("queue config listener cannot connect: %r", exc)
                await backoff.sleep(stop)
                continue
            try:
                if await self._listen_on(conn, stop):
                    log.warning("queue config listener lost its connection; reconnecting")
                    await backoff.sleep(stop)
                else:
                    backoff.reset()
            finally:
                self._ttl_s = TTL_S
                self.invalidate()
                await _close(conn)

    async def _listen_on(self, conn: asyncpg.Connection, stop: asyncio.Event | None) -> bool:
        """Listen until the connection is lost (True) or `stop` is set (False)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(store.NOTIFY_CHANNEL, lambda *_: self.invalidate())
        except CONNECTION_ERRORS as exc:
            log.warning("queue config listener failed: %r", exc)
            return True
        # Changes made while no listener was up were not heard: start from a fresh snapshot.
        self._ttl_s = LISTENING_TTL_S
        self.invalidate()
        waits = [asyncio.ensure_future(lost.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return lost.is_set()


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=CONNECT_TIMEOUT_S)
    except CONNECTION_ERRORS:
        conn.terminate()
