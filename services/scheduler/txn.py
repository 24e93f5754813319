"""One scheduler transaction: row changes and their events commit together (outbox); Redis after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from services.scheduler import metrics
from services.scheduler.redis_steps import RedisSteps
from services.scheduler.store import batches as batch_store
from shared import events, outbox
from shared.dispatch.protocol import Forget, Lease
from shared.kafka.producer import OutgoingMessage
from shared.models import JobSpec
from shared.outbox import OutboxRelay, Outgoing


@dataclass
class Effects:
    """What a transaction produced besides row changes: events (outbox) and Redis work (after commit)."""

    events: list[events.Envelope] = field(default_factory=list)
    pushes: list[tuple[JobSpec, int]] = field(default_factory=list)  # (spec, run_at ms; 0 = ready now)
    dispatches: list[tuple[JobSpec, int]] = field(default_factory=list)  # pushes of rows that were pending
    forget: list[Forget] = field(default_factory=list)  # waiting copies Postgres no longer expects
    releases: list[Lease] = field(default_factory=list)  # dead leases whose attempts are recorded
    messages: list[OutgoingMessage] = field(default_factory=list)  # outbox messages that are not job events


class Committer:
    """Runs a unit of scheduler work in one Postgres transaction, then hands its events to the relay and pushes."""

    def __init__(
        self, pool: asyncpg.Pool, relay: OutboxRelay, redis: RedisSteps, *, acquire_timeout_s: float = 10.0
    ) -> None:
        self.pool = pool
        self.relay = relay
        self.redis = redis
        self._acquire_timeout = acquire_timeout_s

    @asynccontextmanager
    async def transaction(self, source: str) -> AsyncIterator[tuple[asyncpg.Connection, Effects]]:
        """Yield (connection, effects); on a clean exit enqueue the events, commit, then do the Redis work.

        Postgres first, Redis after: a crash between the commit and the Redis steps leaves rows
        that Redis lacks; the reconciler finds and re-dispatches them.
        """
        fx = Effects()
        async with self.pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
            yield conn, fx
            outgoing = await outbox.enqueue(conn, fx.events)
            if fx.messages:
                outgoing = await _enqueue_messages(conn, outgoing, fx.messages)
        if outgoing:
            self.relay.hand_off(outgoing)
            dispatched = sum(1 for e in fx.events if e.type is events.EventType.DISPATCHED)
            if dispatched:
                metrics.DISPATCHED.labels(source).inc(dispatched)
        await self.redis.release(fx.releases)
        await self.redis.forget(fx.forget)
        await self.redis.push(fx.pushes + fx.dispatches, fresh={spec.job_id for spec, _ in fx.dispatches})


async def _enqueue_messages(conn: asyncpg.Connection, outgoing: Outgoing, messages: list[OutgoingMessage]) -> Outgoing:
    # Messages that are not job envelopes (batch events) join the same outbox rows and hand-off.
    rows = [(m.topic, m.key.decode(), m.value, {k: v.decode() for k, v in m.headers}) for m in messages]
    ids = await batch_store.insert_outbox(conn, rows)
    return Outgoing([*outgoing.ids, *ids], [*outgoing.messages, *messages])
