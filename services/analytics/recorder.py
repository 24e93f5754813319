"""Append events to the audit log and add the new ones to every aggregate, in one statement per batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.analytics import sql
from services.analytics.facts import facts_of
from shared.events import Envelope
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


def _columns(envelopes: Sequence[Envelope]) -> list[list[Any]]:
    # In the parameter order of sql.RECORD_EVENTS.
    facts = [facts_of(e) for e in envelopes]
    return [
        [e.event_id for e in envelopes],
        [e.job_id for e in envelopes],
        [e.tenant for e in envelopes],
        [e.type.value for e in envelopes],
        [e.queue for e in envelopes],
        [e.job_type for e in envelopes],
        [e.attempt for e in envelopes],
        [e.occurred_at for e in envelopes],
        [e.to_wire() for e in envelopes],
        [f.duration_ms for f in facts],
        [f.duration_slot for f in facts],
        [f.wait_ms for f in facts],
        [f.wait_slot for f in facts],
        [f.attempt_slot for f in facts],
        [f.error_type for f in facts],
        [f.worker_id for f in facts],
    ]


class EventRecorder:
    """Writes batches of envelopes to `job_events` and, for the new ones, every aggregate table."""

    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 10.0) -> None:
        self._pool = pool
        self._timeout = timeout_s

    async def record(self, envelopes: Sequence[Envelope]) -> RecordResult:
        """Record a batch once per eventId; a redelivered event is skipped and counted as a duplicate."""
        unique = list({e.event_id: e for e in envelopes}.values())
        result = RecordResult(duplicates=len(envelopes) - len(unique))
        if not unique:
            return result
        try:
            result.add(await self._insert(unique))
        except asyncpg.DataError:
            # One event Postgres cannot store (say a \u0000 inside jsonb) must not stall the
            # topic forever: record the batch event by event and skip only the bad ones.
            for envelope in unique:
                result.add(await self._insert_one(envelope))
        return result

    async def _insert(self, envelopes: Sequence[Envelope]) -> RecordResult:
        inserted = await sql.record_events(self._pool, _columns(envelopes), timeout_s=self._timeout)
        return RecordResult(inserted=inserted, duplicates=len(envelopes) - sum(inserted.values()))

    async def _insert_one(self, envelope: Envelope) -> RecordResult:
        try:
            return await self._insert([envelope])
        except asyncpg.DataError as exc:
            fields = job_fields(
                envelope.job_id, queue=envelope.queue, attempt=envelope.attempt, traceparent=envelope.trace_parent
            )
            fields["event_id"] = str(envelope.event_id)
            log.error("skipping an event Postgres refused: %s", exc, extra=fields)
            return RecordResult(rejected=1)
