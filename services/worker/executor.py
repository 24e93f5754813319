"""Running leased jobs: one owned task per job, from `started` to the released lease.

Per job: publish `started` (wait for Kafka's ack), run the handler under its timeout,
publish the outcome (completed / retry / failed / cancelled) and only then release the
lease. The lease is the fence: an attempt whose lease is gone (expired and taken over, e.g.
after the process was stopped past its deadline) publishes no outcome; it reports its result
as a rejected `lateResult` instead, which the scheduler records on the attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

import httpx
from opentelemetry import trace
from redis.exceptions import RedisError

from services.worker import job_events, outcomes
from services.worker.attempt import InFlight, Release, StopReason, conclude, late, run_handler
from services.worker.coalescer import Coalescer
from services.worker.context import JobContext, Report
from services.worker.metrics import IN_FLIGHT, JOBS_PROCESSED, LATE_RESULTS, LEASES_LOST, RELEASES_GONE
from services.worker.publisher import EventSink
from services.worker.registry import Registry
from services.worker.retry_defaults import RetryDefaults
from shared.backoff import Backoff
from shared.dispatch.protocol import Dispatcher, Lease
from shared.events import utcnow
from shared.telemetry import tracer

log = logging.getLogger(__name__)

RELEASE_RETRY_FIRST_S = 0.1
RELEASE_RETRY_MAX_S = 5.0
# Within this share of the lease before its deadline, the worker asks Redis whether it still owns
# the lease before publishing an outcome (the heartbeat normally keeps two thirds of it ahead).
FENCE_MARGIN = 0.25
FENCE_CHECK_TIMEOUT_S = 2.0
# A late result is a record, not an outcome: a few tries, then it is given up.
LATE_PUBLISH_S = 10.0


class Executor:
    """The in-flight table and the per-job tasks."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        sink: EventSink,
        registry: Registry,
        worker_id: str,
        concurrency: int,
        default_timeout_ms: int,
        http: httpx.AsyncClient,
        on_crash: Callable[[BaseException], None],
        trace_jobs: bool = False,
        lease_ms: int = 30_000,
        retry_defaults: RetryDefaults | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._sink = sink
        self._registry = registry
        self.worker_id = worker_id
        self.concurrency = concurrency
        self._default_timeout_ms = default_timeout_ms
        self._http = http
        self._on_crash = on_crash
        self._jobs: dict[uuid.UUID, InFlight] = {}
        self._running = 0  # jobs not yet past their handler
        self._slot_freed = asyncio.Event()
        self._intake_stopped = False
        # Jobs finishing together share one ack script call.
        self._acks: Coalescer[Lease] = Coalescer("acks", self._release_batch)
        self._lease_s = lease_ms / 1000
        self._retry = retry_defaults or RetryDefaults(dispatcher.dispatch_config, registry.retry_policy)
        # A span per job costs ~15% of the hot path; only pay for it when spans go somewhere.
        self._tracer = tracer("services.worker") if trace_jobs else None

    # --- what the fetcher and the heartbeat see -------------------------------------------

    def free_slots(self) -> int:
        """How many more jobs may start now.

        `concurrency` bounds the jobs before or in their handler. A job whose handler is done
        but whose outcome event still waits for Kafka's ack frees its slot yet keeps its lease,
        so a slow ack does not idle a slot; the lease table is capped at twice the concurrency.
        """
        return min(self.concurrency - self._running, 2 * self.concurrency - len(self._jobs))

    async def wait_for_slot(self) -> None:
        """Return once at least one slot is free, or once `stop_intake()` was called."""
        while self.free_slots() <= 0 and not self._intake_stopped:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def stop_intake(self) -> None:
        """The worker is stopping: release a fetcher waiting for a slot so it sees the stop.

        This wakes the hot wait directly, rather than racing every wait against a stop event.
        """
        self._intake_stopped = True
        self._slot_freed.set()

    def leases(self) -> list[Lease]:
        """Every lease held right now (releasing ones too: their deadline must not lapse)."""
        return [rec.lease for rec in self._jobs.values()]

    def job_ids(self) -> list[uuid.UUID]:
        """Ids of the jobs held right now."""
        return list(self._jobs)

    def cancellable_ids(self) -> list[uuid.UUID]:
        """Jobs whose handler has not finished: the ones a cancel flag can still stop."""
        return [i for i, rec in self._jobs.items() if rec.stop_reason is None and rec.handler_pending]

    def start(self, leases: Sequence[Lease], *, leased_at: float | None = None) -> None:
        """Run freshly leased jobs, each in its own owned task; `leased_at`: monotonic time the pop was sent."""
        valid_until = (time.monotonic() if leased_at is None else leased_at) + self._lease_s
        for lease in leases:
            previous = self._jobs.get(lease.job_id)
            if previous is not None:
                # Our older lease on this job expired and we popped it again: the old one is void.
                self._lose(previous)
            rec = self._record(lease)
            rec.valid_until = valid_until
            self._jobs[lease.job_id] = rec
            self._running += 1
            IN_FLIGHT.inc()
            rec.task = asyncio.create_task(self._supervise(rec), name=f"job:{lease.job_id}")
            rec.task.add_done_callback(self._on_done)

    def extended(self, leases: Iterable[Lease], lost: set[uuid.UUID], since: float) -> None:
        """A heartbeat begun at `since` (monotonic) extended these leases, but for `lost`."""
        for lease in leases:
            rec = self._jobs.get(lease.job_id)
            if rec is not None and rec.lease.token == lease.token and lease.job_id not in lost:
                rec.valid_until = max(rec.valid_until, since + self._lease_s)

    def mark_lost(self, lost: Iterable[uuid.UUID], tokens: dict[uuid.UUID, str]) -> None:
        """Leases the heartbeat found taken over: stop those jobs and emit nothing more for them."""
        for job_id in lost:
            rec = self._jobs.get(job_id)
            # A lease acked while the heartbeat ran also reads as lost: ignore releasing jobs.
            if rec is None or rec.releasing or rec.lease.token != tokens.get(job_id):
                continue
            log.warning("lease lost (expired and taken over); abandoning the job", extra=rec.ctx.log_fields())
            self._lose(rec)

    def cancel(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Jobs flagged cancelled: stop their handlers; they then publish `cancelled` and ack."""
        for job_id in job_ids:
            rec = self._jobs.get(job_id)
            if rec is None or rec.lost or rec.releasing or rec.stop_reason is not None or not rec.handler_pending:
                continue
            log.info("cancelled while running; stopping the handler", extra=rec.ctx.log_fields())
            rec.stop_reason = StopReason.CANCELLED
            rec.interrupt("cancelled")

    # --- shutdown ----------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> bool:
        """Wait for every job to finish by itself; False if some were still running at the deadline."""
        tasks = [rec.task for rec in self._jobs.values() if rec.task is not None]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return not pending

    async def hand_back(self, timeout_s: float) -> bool:
        """Stop the handlers still running; their jobs publish `retry` (worker_shutdown) and run again now."""
        for rec in self._jobs.values():
            if rec.stop_reason is None and not rec.lost and rec.handler_pending:
                rec.stop_reason = StopReason.SHUTDOWN
                rec.interrupt("shutdown")
        return await self.drain(timeout_s)

    async def abandon(self, timeout_s: float = 1.0) -> None:
        """Cancel whatever is left (Kafka or Redis unreachable); those leases expire and are requeued."""
        tasks = [rec.task for rec in self._jobs.values() if rec.task is not None and not rec.task.done()]
        for rec in self._jobs.values():
            log.warning("abandoning the job; its lease will expire and be requeued", extra=rec.ctx.log_fields())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def close(self) -> None:
        """Release the batching helper (after abandon)."""
        await self._acks.close()

    # --- one job -----------------------------------------------------------------------------

    def _record(self, lease: Lease) -> InFlight:
        spec = lease.spec

        async def send_report(report: Report) -> None:
            if not rec.lost and rec.stop_reason is None:
                await self._sink.publish([job_events.report(spec, self.worker_id, report)])

        ctx = JobContext(spec, worker_id=self.worker_id, http=self._http, progress_sink=send_report)
        rec = InFlight(lease, ctx)
        return rec

    def _lose(self, rec: InFlight) -> None:
        rec.lost = True
        LEASES_LOST.inc()
        rec.interrupt("lease_lost")

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._on_crash(exc)

    async def _supervise(self, rec: InFlight) -> None:
        spec = rec.lease.spec
        try:
            if self._tracer is None:
                await self._run(rec)
            else:
                with self._tracer.start_as_current_span(
                    f"job {spec.job_type}", kind=trace.SpanKind.CONSUMER,
                    attributes={"job.id": str(spec.job_id), "job.queue": spec.queue, "job.attempt": spec.attempt},
                ):
                    await self._run(rec)
        except Exception:
            # Logged here, where the job is known; `_on_done` then fails the worker.
            log.error("job task crashed", exc_info=True, extra=rec.ctx.log_fields())
            raise
        finally:
            self._finish(rec)
            await rec.ctx.close()
            if self._jobs.get(spec.job_id) is rec:
                del self._jobs[spec.job_id]
            IN_FLIGHT.dec()
            self._slot_freed.set()

    def _finish(self, rec: InFlight) -> None:
        """The handler phase is over: its slot is free, though the lease is held until released."""
        if not rec.finishing:
            rec.finishing = True
            self._running -= 1
            self._slot_freed.set()

    async def _run(self, rec: InFlight) -> None:
        spec = rec.lease.spec
        started_at = utcnow()
        if not await self._sink.publish_until_acked(
            [job_events.started(spec, self.worker_id, started_at, popped_ms=rec.lease.started_ms)], lambda: rec.lost
        ):
            JOBS_PROCESSED.labels(spec.queue, "lost").inc()
            return
        outcome = await run_handler(rec, self._registry.get(spec.job_type), spec.timeout_ms or self._default_timeout_ms)
        self._finish(rec)
        await rec.ctx.flush()  # log lines and checkpoints go out before the outcome
        if not rec.lost and rec.stop_reason is not StopReason.CANCELLED and not await self._still_owned(rec):
            log.warning("lease gone when the attempt ended; its result is rejected", extra=rec.ctx.log_fields())
            self._lose(rec)
        if rec.lost:
            await self._report_late(rec, outcome)
            return
        policy = await self._retry.policy_for(spec) if outcome is not None and outcomes.retries(outcome, spec) else None
        envelope, release = conclude(rec, outcome, self.worker_id, started_at, utcnow(), policy)
        if not await self._sink.publish_until_acked([envelope], lambda: rec.lost):
            await self._report_late(rec, outcome)
            return
        rec.releasing = True
        await self._release(rec, release)

    async def _still_owned(self, rec: InFlight) -> bool:
        """The fence before an outcome: within the lease as last extended, or else Redis says the token still owns it.

        If Redis cannot answer, the outcome goes out anyway: the scheduler rejects it if the
        attempt was already recorded as lost (and records it as late).
        """
        if time.monotonic() < rec.valid_until - FENCE_MARGIN * self._lease_s:
            return True
        began = time.monotonic()
        try:
            lost = await asyncio.wait_for(
                self._dispatcher.heartbeat([rec.lease], int(self._lease_s * 1000)), FENCE_CHECK_TIMEOUT_S
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not check the lease before the outcome: %r", exc, extra=rec.ctx.log_fields())
            return True
        if rec.lease.job_id in lost:
            return False
        rec.valid_until = max(rec.valid_until, began + self._lease_s)
        return True

    async def _report_late(self, rec: InFlight, outcome: outcomes.Outcome | None) -> None:
        """Record (not apply) the result of an attempt whose lease is gone; the lease is not ours to release."""
        spec = rec.lease.spec
        JOBS_PROCESSED.labels(spec.queue, "lost").inc()
        envelope = late(rec, outcome, self.worker_id, utcnow())
        LATE_RESULTS.labels(envelope.data["lateResult"]["outcome"]).inc()
        deadline = time.monotonic() + LATE_PUBLISH_S
        if not await self._sink.publish_until_acked([envelope], lambda: time.monotonic() > deadline):
            log.warning("could not report the late result", extra=rec.ctx.log_fields())

    async def _release_batch(self, leases: Sequence[Lease]) -> None:
        owned = await self._dispatcher.release(leases)
        if owned < len(leases):
            # The outcome went out after the lease was taken over: the scheduler records it as late.
            RELEASES_GONE.inc(len(leases) - owned)
            log.warning("%d of %d leases were gone at release", len(leases) - owned, len(leases))

    async def _release(self, rec: InFlight, release: Release) -> None:
        """Release the lease, retried while Redis is unreachable (the heartbeat keeps the lease)."""
        backoff: Backoff | None = None  # made on the first failure only: this runs once per job
        while True:
            try:
                # A retry is released like any outcome: the scheduler pushes the next attempt when it
                # records the `retry` event (docs/adr/0001-dispatch-state-ownership.md).
                await self._acks.submit(rec.lease)
                break
            except (RedisError, OSError) as exc:
                backoff = backoff or Backoff(RELEASE_RETRY_FIRST_S, RELEASE_RETRY_MAX_S)
                delay = backoff.next_delay()
                log.warning("releasing the lease failed, retrying in %.1fs: %r", delay, exc, extra=rec.ctx.log_fields())
                await asyncio.sleep(delay)
        JOBS_PROCESSED.labels(rec.lease.spec.queue, release.label).inc()
