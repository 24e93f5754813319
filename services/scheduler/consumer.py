"""The scheduler's Kafka batch handler: dispatch submissions, project worker events, settle dependents."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import asyncpg
from aiokafka import ConsumerRecord

from services.scheduler import batches, dead_letters, dependencies, dispatch, metrics, projection, retries
from services.scheduler.store import jobs as store
from services.scheduler.txn import Committer, Effects
from shared.dispatch.protocol import Forget, now_ms
from shared.events import Envelope, EventType
from shared.kafka.consumer import decode_records
from shared.logs import job_fields
from shared.models import JobStatus

log = logging.getLogger(__name__)

GROUP = "scheduler"
TOPICS: tuple[str, ...] = (
    "jobs.submitted", "jobs.started", "jobs.progress", "jobs.completed", "jobs.retries", "jobs.failed",
    "jobs.cancelled",
)
# Worker events only update rows and release dependents: fetched less often than submissions,
# which a client is waiting on.
PROJECTED_TOPICS: tuple[str, ...] = ("jobs.started", "jobs.progress", "jobs.completed", "jobs.retries", "jobs.failed")
# Postgres refusing the data itself (bad jsonb text, out-of-range values): retrying the same
# batch cannot succeed.
DATA_ERRORS: tuple[type[BaseException], ...] = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# Events after which a job's blocked dependents may move.
FINISHING: frozenset[EventType] = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})


class ConsumerLag:
    """How far behind the event stream the last batch was (the reconciler holds back when lagging)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.observed_at = 0.0

    def observe(self, records: Sequence[ConsumerRecord]) -> None:
        """Record the age of the oldest record of a batch being handled."""
        stamps = [r.timestamp for r in records if r.timestamp and r.timestamp > 0]
        if not stamps:
            return
        self.seconds = max(0.0, (now_ms() - min(stamps)) / 1000)
        self.observed_at = time.monotonic()
        metrics.CONSUMER_LAG.set(self.seconds)

    def behind(self, threshold_s: float, recent_s: float) -> bool:
        """Whether a batch handled in the last `recent_s` seconds was older than `threshold_s`."""
        return self.seconds > threshold_s and time.monotonic() - self.observed_at < recent_s


class EventHandler:
    """Handles one consumer batch in one transaction; Redis pushes follow the commit."""

    def __init__(self, committer: Committer, lag: ConsumerLag | None = None) -> None:
        self._committer = committer
        self.lag = lag or ConsumerLag()

    async def __call__(self, records: list[ConsumerRecord]) -> None:
        """The ConsumerLoop handler."""
        self.lag.observe(records)
        await self.handle(decode_records(records))

    async def handle(self, envelopes: Sequence[Envelope]) -> None:
        """Handle a batch in one transaction; a batch Postgres rejects for its data is retried event by event.

        Without that, one malformed event (say a result jsonb refuses) would be retried forever
        and stall its partitions. Connection errors are raised: the consumer loop retries them.
        """
        try:
            await self._handle(envelopes)
        except DATA_ERRORS as exc:
            if len(envelopes) == 1:
                bad = envelopes[0]
                log.error(
                    "skipping event %s (%s): %r", bad.event_id, bad.type, exc,
                    extra=job_fields(bad.job_id, queue=bad.queue, attempt=bad.attempt, traceparent=bad.trace_parent),
                )
                return
            log.warning("batch of %d rejected (%r); handling its events one by one", len(envelopes), exc)
            for envelope in envelopes:
                await self.handle([envelope])

    async def _handle(self, envelopes: Sequence[Envelope]) -> None:
        """Dispatch `submitted`, project the rest (pushing next attempts of retries), forget what a cancel
        left waiting, release or cancel dependents of finished jobs, then complete their batches."""
        submitted = sorted({e.job_id for e in envelopes if e.type is EventType.SUBMITTED})
        projected = [e for e in envelopes if e.type in projection.PROJECTED]
        # Every finishing event is a hint, applied or not: the API may have finished the row itself.
        finished: set[uuid.UUID] = {e.job_id for e in envelopes if e.type in FINISHING}
        cancelled = sorted({e.job_id for e in envelopes if e.type is EventType.CANCELLED})
        if not submitted and not projected:
            return
        at = now_ms()
        async with self._committer.transaction("consumer") as (conn, fx):
            if submitted:
                moved = await dispatch.dispatch_pending(conn, submitted, fx, now_ms=at)
                finished.update(moved[dispatch.Outcome.CANCELLED])
            if projected:
                metrics.PROJECTION_BATCH.observe(len(projected))
                changed = await projection.project(conn, projected)
                fx.messages.extend(dead_letters.alerts(projected, changed))
                retrying = [job_id for job_id, status in changed.items() if status is JobStatus.RETRYING]
                if retrying:
                    await retries.follow_retries(conn, retrying, fx, at_ms=at)
            if cancelled:
                await forget_cancelled(conn, cancelled, fx)
            if finished:
                settled = await dependencies.settle(conn, finished, fx, now_ms=at)
                # Last: batch rows are locked after every job row of the transaction (no lock cycle).
                completed = await batches.complete(conn, finished | set(settled[dispatch.Outcome.CANCELLED]), fx)
                if completed:
                    metrics.BATCHES_COMPLETED.inc(completed)


async def forget_cancelled(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], fx: Effects) -> None:
    """Drop the waiting copies of jobs whose rows are (still) cancelled or otherwise over.

    The api only raised the cancel flag (pop and promote drop a flagged copy when they meet it);
    the copy goes here. A scheduled or retry copy is held one attempt past the row's, hence +1;
    a row retried meanwhile is live again and keeps its fresh copy.
    """
    for row in await store.terminal_rows(conn, job_ids):
        fx.forget.append(Forget(row.queue, row.id, row.state_attempt + 1))
