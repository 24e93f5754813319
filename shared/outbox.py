"""The transactional outbox: events written in the same transaction as the state they announce,
then published by a relay (right after commit, plus a sweep for leftovers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from shared import events
from shared.errors import EventPublishError
from shared.kafka.producer import EventProducer, OutgoingMessage, message_for
from shared.telemetry import inject_headers

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO outbox (topic, key, value, headers)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[])
"""

# SKIP LOCKED lets every replica's relay drain the same table without blocking each other.
_CLAIM = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING id, topic, key, value, headers
"""


async def enqueue(conn: asyncpg.Connection, envelopes: Sequence[events.Envelope]) -> None:
    """Add events to the outbox inside the caller's transaction."""
    if not envelopes:
        return
    trace = inject_headers()
    messages = [message_for(e, trace) for e in envelopes]
    await conn.execute(
        _INSERT,
        [m.topic for m in messages],
        [m.key.decode() for m in messages],
        [m.value for m in messages],
        [{k: v.decode() for k, v in m.headers} for m in messages],
    )


class OutboxRelay:
    """Publishes outbox rows to Kafka and deletes them only once Kafka acknowledged them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: EventProducer,
        *,
        batch_size: int = 500,
        sweep_interval_s: float = 1.0,
        coalesce_s: float = 0.002,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch = batch_size
        self._sweep = sweep_interval_s
        self._coalesce_s = coalesce_s
        self._kick = asyncio.Event()
        self.published = 0

    def kick(self) -> None:
        """Something was just committed: publish it now rather than at the next sweep."""
        self._kick.set()

    async def run(self) -> None:
        """Drain on every kick and every sweep interval, until cancelled."""
        backoff = 0.2
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=self._sweep)
            except TimeoutError:
                pass
            else:
                # Let commits that land in the next moment ride in the same publish.
                await asyncio.sleep(self._coalesce_s)
            self._kick.clear()
            try:
                while await self.drain_once() >= self._batch:
                    pass
                backoff = 0.2
            except (EventPublishError, asyncpg.PostgresError, OSError, TimeoutError) as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._kick.set()

    async def drain_once(self) -> int:
        """Publish one batch; the rows come back if publishing fails (the transaction rolls back)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch)
            if not rows:
                return 0
            await self._producer.publish([
                OutgoingMessage(
                    r["topic"], r["key"].encode(), bytes(r["value"]),
                    [(k, str(v).encode()) for k, v in r["headers"].items()],
                )
                for r in rows
            ])
        self.published += len(rows)
        return len(rows)
