"""Bulk actions on the dead-letter queue (retry, delete) and the rows of its CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from services.api.jobs.events import submitted_data
from services.api.store import dlq, job_writes
from services.api.store.connections import transaction
from services.api.store.dlq import DeadLetterFilter
from shared import outbox
from shared.events import Envelope, EventType
from shared.models import JobStatus
from shared.outbox import Outgoing

CSV_COLUMNS = ("jobId", "queue", "jobType", "attempts", "errorType", "errorMessage", "failedAt", "payload")


@dataclass(frozen=True)
class Retried:
    """The jobs moved back to pending (newest failure first) and their outbox rows."""

    job_ids: list[uuid.UUID]
    outgoing: Outgoing


def retried_event(tenant: str, row: asyncpg.Record) -> Envelope:
    """The `submitted` event of a manually retried job (as POST /jobs/{id}/retry emits it)."""
    data = submitted_data(
        priority=row["priority"], payload=row["payload"], max_attempts=row["max_attempts"], retry=row["retry"],
        timeout_ms=row["timeout_ms"], run_at=None, depends_on=row["depends_on"], tags=row["tags"],
        batch_id=row["batch_id"], callback_url=row["callback_url"],
    )
    data["manualRetry"] = True
    return Envelope(
        type=EventType.SUBMITTED, job_id=row["id"], queue=row["queue"], job_type=row["job_type"], attempt=0,
        tenant=tenant, trace_parent=row["trace_parent"], data=data,
    )


async def retry_dead_letters(
    pool: asyncpg.Pool,
    tenant: str,
    selection: DeadLetterFilter,
    limit: int,
    clear_cancel_flag: Callable[[uuid.UUID, str], Awaitable[None]] | None = None,
) -> Retried:
    """Move at most `limit` matching failed jobs back to pending with a fresh budget, in one transaction."""
    async with transaction(pool) as conn:
        ids = await dlq.lock_failed_ids(conn, tenant, selection, limit)
        rows = await job_writes.reset_many_for_retry(conn, tenant, ids, [JobStatus.FAILED])
        if clear_cancel_flag is not None:
            for row in rows:
                if row["cancel_was_requested"]:
                    # Before commit: a cancel asked for while it ran left a flag that would make a worker drop it.
                    await clear_cancel_flag(row["id"], row["queue"])
        by_id = {row["id"]: row for row in rows}
        ordered = [by_id[i] for i in ids if i in by_id]
        outgoing = await outbox.enqueue(conn, [retried_event(tenant, row) for row in ordered])
    return Retried([row["id"] for row in ordered], outgoing)


async def delete_dead_letters(pool: asyncpg.Pool, tenant: str, selection: DeadLetterFilter, limit: int) -> int:
    """Delete at most `limit` matching failed jobs (their attempts with them; their events stay)."""
    async with transaction(pool) as conn:
        ids = await dlq.lock_failed_ids(conn, tenant, selection, limit)
        return len(await dlq.delete_failed(conn, tenant, ids))


def csv_header() -> bytes:
    """The export's header row."""
    return csv_lines([CSV_COLUMNS])


def csv_rows(rows: Sequence[asyncpg.Record]) -> bytes:
    """Export rows as RFC 4180 lines (CRLF, quoted where needed); the payload as compact JSON."""
    lines = []
    for row in rows:
        error = row["last_error"] or {}
        lines.append((
            str(row["id"]), row["queue"], row["job_type"], str(row["attempts"]),
            str(error.get("type") or ""), str(error.get("message") or ""),
            row["failed_at"].isoformat(), orjson.dumps(row["payload"]).decode(),
        ))
    return csv_lines(lines)


def csv_lines(lines: Sequence[Sequence[str]]) -> bytes:
    """Lines as CSV bytes."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)
    return buffer.getvalue().encode()
