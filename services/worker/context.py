"""What a handler sees of its job: the payload, ids, progress reporting and a cancel signal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import httpx

from services.worker.metrics import PROGRESS_DROPPED
from shared.logs import job_fields
from shared.models import JobSpec

log = logging.getLogger(__name__)

ProgressSink = Callable[[float, str | None], Awaitable[None]]


class CancelSignal:
    """Set when the worker wants the handler to stop; usable as a flag or awaited.

    `if ctx.cancelled:` tests it, `await ctx.cancelled` waits for it. The worker also
    cancels the handler's task, so cooperative checks are only needed around work that
    does not yield to the event loop.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Raise the signal (the first reason sticks)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        """Whether the handler has been asked to stop."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Return once the handler has been asked to stop."""
        await self._event.wait()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def __await__(self) -> Generator[Any, None, bool]:
        return self._event.wait().__await__()


class JobContext:
    """One attempt of one job, as handed to its handler."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        worker_id: str,
        http: httpx.AsyncClient,
        progress_sink: ProgressSink,
    ) -> None:
        self.spec = spec
        self.worker_id = worker_id
        self.http = http
        self.cancelled = CancelSignal()
        self._sink = progress_sink
        self._latest: tuple[float, str | None] | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def job_id(self) -> uuid.UUID:
        return self.spec.job_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.spec.payload

    @property
    def attempt(self) -> int:
        return self.spec.attempt

    @property
    def max_attempts(self) -> int:
        return self.spec.max_attempts

    @property
    def queue(self) -> str:
        return self.spec.queue

    @property
    def job_type(self) -> str:
        return self.spec.job_type

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    def log_fields(self) -> dict[str, object]:
        """`extra=` fields tying a log line to this attempt (`log.info("...", extra=ctx.log_fields())`)."""
        spec = self.spec
        return job_fields(
            spec.job_id, queue=spec.queue, attempt=spec.attempt, worker_id=self.worker_id,
            traceparent=spec.trace_parent,
        )

    async def report_progress(self, percent: float, message: str | None = None) -> None:
        """Publish progress without waiting for Kafka; reports made while one is in flight coalesce."""
        self._latest = (max(0.0, min(100.0, float(percent))), message)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name=f"progress:{self.job_id}")

    async def _send(self) -> None:
        # Only the latest report matters: a slow broker never queues up stale progress.
        while self._latest is not None:
            percent, message = self._latest
            self._latest = None
            try:
                await self._sink(percent, message)
            except Exception as exc:
                # Progress is advisory and the next report supersedes it: count it, never fail the job.
                PROGRESS_DROPPED.inc()
                log.debug("progress report dropped: %r", exc, extra=self.log_fields())

    async def close(self) -> None:
        """Drop pending progress: the attempt's outcome event supersedes it."""
        self._latest = None
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
