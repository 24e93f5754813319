"""The transactional outbox: events are written in the same transaction as the state they announce.

After the commit the writer hands the rows to its relay, which publishes them from memory and
deletes them once Kafka acknowledged them, a batched DELETE instead of a claim transaction per
commit. Rows whose writer died before that (or that it gave up holding) are older than
`sweep_after_s`; the sweep claims and publishes those.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from shared import events
from shared.backoff import Backoff
from shared.errors import EventPublishError
from shared.kafka.producer import EventProducer, OutgoingMessage, message_for
from shared.telemetry import inject_headers

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO outbox (topic, key, value, headers)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[])
RETURNING id
"""

# Only rows nobody holds any more: a live writer publishes and deletes its own within seconds.
# SKIP LOCKED lets every replica sweep the same table without blocking the others.
_CLAIM = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE created_at < now() - make_interval(secs => $2)
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING id, topic, key, value, headers
"""

_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"

# Statement time for the relay's own queries (the pool's command timeout may be longer).
_DB_TIMEOUT_S = 10.0
# Postgres away or restarting: the relay waits and tries again, it never dies of it.
_DB_ERRORS: tuple[type[Exception], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_PUBLISH_ERRORS: tuple[type[Exception], ...] = (EventPublishError, *_DB_ERRORS)


@dataclass(frozen=True)
class Outgoing:
    """Outbox rows one transaction wrote: their ids and the messages they hold (in any order)."""

    ids: list[int] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)


NOTHING = Outgoing()


async def enqueue(conn: asyncpg.Connection, envelopes: Sequence[events.Envelope]) -> Outgoing:
    """Add events to the outbox inside the caller's transaction; hand the result to the relay after commit."""
    if not envelopes:
        return NOTHING
    trace = inject_headers()
    messages = [message_for(e, trace) for e in envelopes]
    rows = await conn.fetch(
        _INSERT,
        [m.topic for m in messages],
        [m.key.decode() for m in messages],
        [m.value for m in messages],
        [{k: v.decode() for k, v in m.headers} for m in messages],
    )
    return Outgoing([r["id"] for r in rows], messages)


def row_message(row: asyncpg.Record) -> OutgoingMessage:
    """The message an outbox row holds."""
    return OutgoingMessage(
        row["topic"], row["key"].encode(), bytes(row["value"]),
        [(k, str(v).encode()) for k, v in row["headers"].items()],
    )


class OutboxRelay:
    """Publishes committed outbox rows and deletes them only once Kafka acknowledged them.

    Handed-off rows wait in memory (at most `max_held` messages; beyond that the oldest are left
    to the sweep) and go out in up to `max_in_flight` concurrent publishes; a failed publish puts
    its rows back and backs off. `run()` drives publishing, deleting and sweeping.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: EventProducer,
        *,
        batch_size: int = 500,
        sweep_interval_s: float = 1.0,
        sweep_after_s: float = 15.0,
        delete_interval_s: float = 0.05,
        max_held: int = 20_000,
        max_in_flight: int = 4,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch = batch_size
        self._sweep_interval = sweep_interval_s
        self._sweep_after = sweep_after_s
        self._delete_interval = delete_interval_s
        self._max_held = max_held
        # (hand-off time, rows): rows held past half of `sweep_after_s` are left to the sweep, so
        # a row is never both retried here and claimed by a sweep.
        self._held: collections.deque[tuple[float, Outgoing]] = collections.deque()
        self._held_messages = 0
        self._sending = 0  # messages in publishes under way
        self._acked: list[int] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._work = asyncio.Event()
        self._retry_at = 0.0
        self._publish_backoff = Backoff(initial_s=0.2, max_s=5.0)
        self.published = 0

    @property
    def held(self) -> int:
        """Messages handed off and not yet acknowledged by Kafka (waiting or being sent)."""
        return self._held_messages + self._sending

    def hand_off(self, outgoing: Outgoing) -> None:
        """Publish rows the caller just committed (no await: the relay's loop sends them)."""
        if not outgoing.messages:
            return
        self._held.append((time.monotonic(), outgoing))
        self._held_messages += len(outgoing)
        while self._held_messages > self._max_held and len(self._held) > 1:
            # Kafka has been away a while: keep memory bounded, the rows are safe in Postgres.
            self._held_messages -= len(self._held.popleft()[1])
        self._work.set()

    async def run(self) -> None:
        """Publish, delete and sweep until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish_loop())
                group.create_task(self._delete_loop())
                group.create_task(self._sweep_loop())
        finally:
            for task in list(self._flushes):
                task.cancel()
            if self._flushes:
                await asyncio.wait(self._flushes)

    async def _publish_loop(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._held:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                await self._slots.acquire()
                groups = self._take()
                task = asyncio.create_task(self._flush(groups), name="outbox-publish")
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)

    def _take(self) -> list[tuple[float, Outgoing]]:
        groups: list[tuple[float, Outgoing]] = []
        count = 0
        while self._held and (not groups or count + len(self._held[0][1]) <= self._batch):
            group = self._held.popleft()
            groups.append(group)
            count += len(group[1])
        self._held_messages -= count
        self._sending += count
        return groups

    async def _flush(self, groups: list[tuple[float, Outgoing]]) -> None:
        done = False
        try:
            await self._producer.publish([m for _, g in groups for m in g.messages])
            done = True
        except EventPublishError as exc:
            delay = self._publish_backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
        finally:
            self._slots.release()
            self._sending -= sum(len(g) for _, g in groups)
            if done:
                self._publish_backoff.reset()
                self.published += sum(len(g) for _, g in groups)
                for _, g in groups:
                    self._acked.extend(g.ids)
            else:
                keep_after = time.monotonic() - self._sweep_after / 2
                kept = [(at, g) for at, g in groups if at > keep_after]
                self._held.extendleft(reversed(kept))
                self._held_messages += sum(len(g) for _, g in kept)
                self._work.set()

    async def _delete_loop(self) -> None:
        while True:
            await asyncio.sleep(self._delete_interval)
            if self._acked:
                try:
                    await self.delete_acked()
                except _DB_ERRORS as exc:
                    log.warning("outbox relay: deleting published rows failed: %r", exc)
                    await asyncio.sleep(1.0)

    async def delete_acked(self) -> None:
        """Delete the rows Kafka acknowledged (a failure keeps them for the next try)."""
        ids, self._acked = self._acked, []
        try:
            async with self._pool.acquire(timeout=_DB_TIMEOUT_S) as conn:
                await conn.execute(_DELETE, ids, timeout=_DB_TIMEOUT_S)
        except BaseException:
            self._acked[:0] = ids
            raise

    async def _sweep_loop(self) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                while await self.drain_once() >= self._batch:
                    pass
                backoff.reset()
            except _PUBLISH_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("outbox sweep: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def drain_once(self, older_than_s: float | None = None) -> int:
        """Sweep one batch of rows older than `older_than_s` (default: `sweep_after_s`).

        The claim and the publish share a transaction: rows come back if publishing fails.
        """
        age = self._sweep_after if older_than_s is None else older_than_s
        async with self._pool.acquire(timeout=_DB_TIMEOUT_S) as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch, age, timeout=_DB_TIMEOUT_S)
            if not rows:
                return 0
            await self._producer.publish([row_message(r) for r in rows])
        self.published += len(rows)
        return len(rows)

    async def flush(self, timeout_s: float) -> None:
        """At shutdown, after `run` ended: publish what is held and delete what was acknowledged.

        Best effort within `timeout_s`: whatever is left stays in the outbox for a later sweep.
        """
        try:
            await asyncio.wait_for(self._flush_all(), timeout=timeout_s)
        except _PUBLISH_ERRORS as exc:
            log.info("outbox rows left for a later sweep: %r", exc)

    async def _flush_all(self) -> None:
        groups = [g for _, g in self._held]
        self._held.clear()
        self._held_messages = 0
        if groups:
            await self._producer.publish([m for g in groups for m in g.messages])
            for g in groups:
                self._acked.extend(g.ids)
        if self._acked:
            await self.delete_acked()
