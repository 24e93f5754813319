"""One attempt of one job: its in-flight record, the handler call, and the concluding event."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.worker import job_events, outcomes
from services.worker.context import UNSET, JobContext
from services.worker.metrics import HANDLER_DURATION
from services.worker.registry import Handler
from shared.dispatch.protocol import Lease
from shared.events import Envelope
from shared.models import RetryPolicy

log = logging.getLogger(__name__)


class StopReason(StrEnum):
    """Why the worker stopped a handler itself."""

    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"


@dataclass(eq=False)
class InFlight:
    """One job this worker holds, and how far it got."""

    lease: Lease
    ctx: JobContext
    task: asyncio.Task[None] | None = None
    handler_task: asyncio.Task[outcomes.Outcome] | None = None
    stop_reason: StopReason | None = None
    lost: bool = False
    finishing: bool = False  # past the handler: publishing the outcome, then releasing
    releasing: bool = False
    # Until when (time.monotonic()) the lease surely holds: its deadline as of the last extension
    # this worker saw succeed. Past it, the worker asks Redis before publishing an outcome.
    valid_until: float = 0.0

    @property
    def handler_pending(self) -> bool:
        """The handler has not started yet, or is still running."""
        return self.handler_task is None or not self.handler_task.done()

    def interrupt(self, reason: str) -> None:
        """Signal the handler and cancel its task."""
        self.ctx.cancelled.set(reason)
        if self.handler_task is not None and not self.handler_task.done():
            self.handler_task.cancel()


@dataclass(frozen=True)
class Release:
    """The lease is released once the outcome event is acknowledged; this says how the attempt ended.

    A retry is released like any other outcome: the scheduler pushes the next attempt when it
    records the `retry` event (docs/adr/0001-dispatch-state-ownership.md).
    """

    label: str  # the metrics outcome


async def run_handler(rec: InFlight, fn: Handler | None, timeout_ms: int) -> outcomes.Outcome | None:
    """The handler's outcome in its own task; None when the worker stopped it (cancel, shutdown, lost lease)."""
    spec = rec.lease.spec
    if rec.stop_reason is not None or rec.lost:
        return None
    if fn is None:
        return outcomes.unknown_job_type(spec.job_type)
    began = time.monotonic()
    task = rec.handler_task = asyncio.create_task(invoke(fn, rec.ctx, timeout_ms), name=f"handler:{spec.job_id}")
    try:
        # asyncio.wait, not `await task`: the handler's cancellation must not cancel us.
        await asyncio.wait({task})
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        HANDLER_DURATION.labels(spec.job_type).observe(time.monotonic() - began)
    if task.cancelled():
        if rec.stop_reason is not None or rec.lost:
            return None
        return outcomes.from_exception(asyncio.CancelledError("handler cancelled itself"))
    exc = task.exception()
    if exc is not None:  # BaseException subclasses invoke() does not catch
        return outcomes.from_exception(exc)
    return task.result()


async def invoke(fn: Handler, ctx: JobContext, timeout_ms: int) -> outcomes.Outcome:
    """Run one handler under its timeout and map whatever happens to an Outcome."""
    deadline = asyncio.timeout(timeout_ms / 1000)
    try:
        async with deadline:
            result = await fn(ctx)
    except TimeoutError as exc:
        # A TimeoutError the handler raised itself is its own error, not our deadline.
        return outcomes.timed_out(timeout_ms) if deadline.expired() else outcomes.from_exception(exc)
    except Exception as exc:
        log.info("handler of %s raised %r", ctx.job_type, exc, extra=ctx.log_fields())
        return outcomes.from_exception(exc)
    return outcomes.success(result)


def conclude(
    rec: InFlight,
    outcome: outcomes.Outcome | None,
    worker_id: str,
    started_at: datetime,
    ended_at: datetime,
    policy: RetryPolicy | None = None,
) -> tuple[Envelope, Release]:
    """The event that ends the attempt and how to release the lease once Kafka acknowledged it.

    `policy` is the retry policy resolved for the job (see retry_defaults); None: the job's own or the default.
    """
    spec = rec.lease.spec
    checkpoint = rec.ctx.checkpoint_state if rec.ctx.checkpointed else UNSET
    if rec.stop_reason is StopReason.CANCELLED:
        return job_events.cancelled(spec), Release("cancelled")
    if rec.stop_reason is StopReason.SHUTDOWN and outcome is None:
        # Handing the job back burns an attempt number (the scheduler pushes attempt + 1 when it
        # records this retry): an honest audit of an attempt that started and never finished.
        error = outcomes.error_info(outcomes.WORKER_SHUTDOWN, "the worker shut down before the handler finished", True)
        return job_events.retry(spec, worker_id, error, 0, started_at, ended_at, checkpoint), Release("shutdown")
    if outcome is None:  # stopped with no recorded reason; treat it as a crash of the attempt
        outcome = outcomes.from_exception(asyncio.CancelledError("handler stopped"))
    decision = outcomes.decide(outcome, spec, policy)
    if decision.verdict is outcomes.Verdict.COMPLETED:
        envelope = job_events.completed(spec, worker_id, outcome.result, started_at, ended_at, checkpoint)
        return envelope, Release("completed")
    assert outcome.error is not None  # only a success has no error
    if decision.verdict is outcomes.Verdict.RETRY:
        envelope = job_events.retry(spec, worker_id, outcome.error, decision.delay_ms, started_at, ended_at, checkpoint)
        return envelope, Release("retry")
    reason = (decision.reason or outcomes.FailReason.PERMANENT).value
    envelope = job_events.failed(spec, worker_id, outcome.error, reason, started_at, ended_at, checkpoint)
    return envelope, Release("failed")


def late(rec: InFlight, outcome: outcomes.Outcome | None, worker_id: str, at: datetime) -> Envelope:
    """The record of a result this worker will not apply, its lease being gone: `abandoned` if the
    handler was stopped before it produced one."""
    spec = rec.lease.spec
    if rec.stop_reason is StopReason.CANCELLED:
        kind = "cancelled"
    elif outcome is None:
        kind = "abandoned"
    else:
        kind = outcomes.decide(outcome, spec).verdict.value
    error = outcome.error if outcome is not None else None
    return job_events.late_result(spec, worker_id, kind, at, error)
