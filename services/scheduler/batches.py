"""`batch_completed`: emitted once per batch, in the transaction that saw its last job end."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg
import orjson

from services.scheduler.store import batches as store
from services.scheduler.txn import Effects
from shared import events
from shared.ids import new_id
from shared.kafka.producer import OutgoingMessage
from shared.telemetry import inject_headers


def completed_message(batch: store.CompletedBatch) -> OutgoingMessage:
    """The event of DESIGN §5 Batches: keyed by batch id; jobId, queue, jobType and attempt null."""
    doc = {
        "eventId": str(new_id()),
        "type": events.BATCH_COMPLETED,
        "schemaVersion": events.SCHEMA_VERSION,
        "occurredAt": batch.completed_at.isoformat(),
        "jobId": None,
        "queue": None,
        "jobType": None,
        "attempt": None,
        "data": {"batchId": str(batch.id), "counts": batch.counts},
    }
    headers = [*inject_headers(), (events.TENANT_HEADER, batch.tenant.encode())]
    return OutgoingMessage(events.BATCHES_TOPIC, str(batch.id).encode(), orjson.dumps(doc), headers)


async def complete(conn: asyncpg.Connection, finished: Iterable[uuid.UUID], fx: Effects) -> int:
    """Complete the batches of jobs that just finished (a hint: redeliveries change nothing); returns how many."""
    job_ids = sorted(set(finished))
    if not job_ids:
        return 0
    done = await store.complete_batches(conn, job_ids)
    fx.messages.extend(completed_message(batch) for batch in done)
    return len(done)
