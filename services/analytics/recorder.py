"""Append events to the audit log and add the new ones to every aggregate, in one transaction per batch."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.analytics import sql
from services.analytics.tally import Tally
from shared.events import Envelope, encode
from shared.logs import job_fields

log = logging.getLogger(__name__)


@dataclass
class RecordResult:
    """What one `record` call did: new events by type, duplicates, and events Postgres refused."""

    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: int = 0

    @property
    def inserted_total(self) -> int:
        """How many events were new."""
        return sum(self.inserted.values())

    def add(self, other: RecordResult) -> None:
        """Fold another result into this one."""
        for kind, n in other.inserted.items():
            self.inserted[kind] = self.inserted.get(kind, 0) + n
        self.duplicates += other.duplicates
        self.rejected += other.rejected


def _audit_columns(envelopes: Sequence[Envelope], wire: Mapping[uuid.UUID, bytes]) -> list[list[Any]]:
    # In the parameter order of sql.INSERT_EVENTS. The envelope goes in as the text it came in as (Postgres
    # parses it into jsonb either way): re-encoding it was a fifth of analytics' own time per event.
    return [
        [e.event_id for e in envelopes],
        [e.job_id for e in envelopes],
        [e.tenant for e in envelopes],
        [e.type.value for e in envelopes],
        [e.queue for e in envelopes],
        [e.job_type for e in envelopes],
        [e.attempt for e in envelopes],
        [e.occurred_at for e in envelopes],
        [_wire_text(e, wire.get(e.event_id)) for e in envelopes],
    ]


def _wire_text(envelope: Envelope, raw: bytes | None) -> str:
    return raw.decode() if raw is not None else encode(envelope).decode()


class EventRecorder:
    """Writes batches of envelopes to `job_events` and, for the new ones, every aggregate table."""

    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._timeout = timeout_s

    async def record(self, envelopes: Sequence[Envelope], wire: Mapping[uuid.UUID, bytes] | None = None
                     ) -> RecordResult:
        """Record a batch once per eventId; a redelivered event is skipped and counted as a duplicate.

        `wire`: the Kafka value each event came as, by eventId, stored as the audit envelope (else re-encoded).
        """
        unique = list({e.event_id: e for e in envelopes}.values())
        result = RecordResult(duplicates=len(envelopes) - len(unique))
        if not unique:
            return result
        raw = wire or {}
        try:
            result.add(await self._insert(unique, raw))
        except asyncpg.DataError:
            # One event Postgres cannot store (say a \u0000 inside jsonb) must not stall the
            # topic forever: record the batch event by event and skip only the bad ones.
            for envelope in unique:
                result.add(await self._insert_one(envelope, raw))
        return result

    async def _insert(self, envelopes: Sequence[Envelope], wire: Mapping[uuid.UUID, bytes]) -> RecordResult:
        # One transaction: a crash leaves the whole batch (audit rows and counts) or none of it.
        # The insert's RETURNING decides what is new; only that is counted, and counted here in
        # Python, so Postgres only appends and adds (see docs/adr/0007).
        timeout = self._timeout
        async with self._pool.acquire() as conn, conn.transaction():
            insert = asyncio.ensure_future(sql.insert_events(conn, _audit_columns(envelopes, wire), timeout_s=timeout))
            try:
                await asyncio.sleep(0)  # the insert goes out before the counting below
                # Counted while Postgres inserts, as if every event were new (they nearly always are).
                tally = Tally().add_all(envelopes)
            finally:
                new_ids = await insert
            fresh = envelopes if len(new_ids) == len(envelopes) else [e for e in envelopes if e.event_id in new_ids]
            if len(fresh) < len(envelopes):
                tally = Tally().add_all(fresh)  # a redelivery: count only what was new
            if fresh:
                stats = [tally.stats_columns(rows) for rows in (tally.minutes, *tally.rolled_up())]
                await sql.add_aggregates(conn, stats, tally.worker_columns(), tally.queue_minute_columns(),
                                         timeout_s=timeout)
        inserted: dict[str, int] = {}
        for e in fresh:
            inserted[e.type.value] = inserted.get(e.type.value, 0) + 1
        return RecordResult(inserted=inserted, duplicates=len(envelopes) - len(fresh))

    async def _insert_one(self, envelope: Envelope, wire: Mapping[uuid.UUID, bytes]) -> RecordResult:
        try:
            return await self._insert([envelope], wire)
        except asyncpg.DataError as exc:
            fields = job_fields(
                envelope.job_id, queue=envelope.queue, attempt=envelope.attempt, traceparent=envelope.trace_parent
            )
            fields["event_id"] = str(envelope.event_id)
            log.error("skipping an event Postgres refused: %s", exc, extra=fields)
            return RecordResult(rejected=1)
