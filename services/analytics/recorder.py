"""Append events to the audit log and bump the per-minute counters, in one statement per batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shared.events import Envelope, EventType

log = logging.getLogger(__name__)

# One round trip per batch. The counters are fed from the RETURNING rows of the audit-log
# insert, so an event that was already recorded (a redelivery) is neither stored nor counted
# twice. Both inserts run in sorted key order so that concurrent batches (two replicas during
# a rebalance) lock rows in the same order and cannot deadlock.
_RECORD = """
WITH incoming AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::integer[], $8::timestamptz[], $9::jsonb[], $10::bigint[]
    ) AS t(event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope, duration_ms)
),
inserted AS (
    INSERT INTO job_events (event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope)
    SELECT event_id, job_id, tenant, type, queue, job_type, attempt, occurred_at, envelope
    FROM incoming
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, type, queue, occurred_at
),
counted AS (
    INSERT INTO queue_minute_stats AS s (queue, minute, outcome, count, duration_ms_sum)
    SELECT i.queue, date_trunc('minute', i.occurred_at, 'UTC'), i.type, count(*), coalesce(sum(x.duration_ms), 0)
    FROM inserted i JOIN incoming x ON x.event_id = i.event_id
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (queue, minute, outcome) DO UPDATE
        SET count = s.count + EXCLUDED.count,
            duration_ms_sum = s.duration_ms_sum + EXCLUDED.duration_ms_sum
)
SELECT type, count(*)::integer AS n FROM inserted GROUP BY type
"""

_BIGINT_MAX = 2**63 - 1


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


def duration_ms(envelope: Envelope) -> int:
    """`data.durationMs` of a completed event (0 for other events or a missing/invalid value)."""
    if envelope.type is not EventType.COMPLETED:
        return 0
    value = envelope.data.get("durationMs")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, min(int(value), _BIGINT_MAX))


def _columns(envelopes: Sequence[Envelope]) -> list[list[Any]]:
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
        [duration_ms(e) for e in envelopes],
    ]


class EventRecorder:
    """Writes batches of envelopes to `job_events` and `queue_minute_stats`."""

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
        rows = await self._pool.fetch(_RECORD, *_columns(envelopes), timeout=self._timeout)
        inserted = {row["type"]: row["n"] for row in rows}
        return RecordResult(inserted=inserted, duplicates=len(envelopes) - sum(inserted.values()))

    async def _insert_one(self, envelope: Envelope) -> RecordResult:
        try:
            return await self._insert([envelope])
        except asyncpg.DataError as exc:
            log.error("skipping event %s of job %s that Postgres refused: %s", envelope.event_id, envelope.job_id, exc)
            return RecordResult(rejected=1)
