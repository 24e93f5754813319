"""What a handler sees of its job: the payload, ids, progress, logs, checkpoints and a cancel signal.

Progress, log lines and checkpoints leave through one coalescing sender: while one report is
on its way to Kafka the next accumulates (latest progress, latest checkpoint, every log line up
to a bound), so a chatty handler never queues up messages behind a slow broker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services.worker.metrics import PROGRESS_DROPPED
from shared.logs import job_fields
from shared.models import JobSpec

log = logging.getLogger(__name__)

MAX_LOG_CHARS = 1000
MAX_STAGE_CHARS = 200
# Lines held for one report while the previous one is in flight; the job keeps its last 200 anyway.
MAX_PENDING_LOGS = 200
# A checkpoint travels in the next attempt's spec through Redis and Kafka: keep it small.
MAX_CHECKPOINT_BYTES = 64 * 1024
FLUSH_TIMEOUT_S = 2.0


class Unset:
    """No checkpoint was given (None is a valid state: it clears the checkpoint)."""


UNSET = Unset()


@dataclass
class Report:
    """What one `jobs.progress` event of the attempt carries: any of progress, log lines, a checkpoint."""

    progress: dict[str, Any] | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Any = UNSET
    dropped_logs: int = 0

    @property
    def has_checkpoint(self) -> bool:
        return not isinstance(self.checkpoint, Unset)

    @property
    def empty(self) -> bool:
        return self.progress is None and not self.logs and not self.has_checkpoint


ProgressSink = Callable[[Report], Awaitable[None]]


def _bounded(text: Any, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def encode_checkpoint(state: Any) -> Any:
    """The state as JSON would carry it; ValueError if it is not JSON or too large."""
    try:
        raw = orjson.dumps(state)
    except TypeError as exc:
        raise ValueError(f"checkpoint state is not JSON: {exc}") from exc
    if len(raw) > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"checkpoint state is {len(raw)} bytes (max {MAX_CHECKPOINT_BYTES})")
    return orjson.loads(raw)


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
    """One attempt of one job, as handed to its handler.

    Handler API: `payload`, ids, `attempt`, `cancelled` (flag / awaitable), `checkpoint_state`
    (the last checkpoint of an earlier attempt, None at first), `await progress(current, total,
    stage=, message=)`, `log(message)`, `await checkpoint(state)`, `http` (a shared client).
    """

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
        self._pending = Report()
        self._sender: asyncio.Task[None] | None = None
        self._checkpoint: Any = spec.checkpoint_state
        self.checkpointed = False  # this attempt called checkpoint(): its outcome carries the state

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

    @property
    def checkpoint_state(self) -> Any:
        """The last checkpoint: this attempt's latest, else the one an earlier attempt left (None: none)."""
        return self._checkpoint

    def log_fields(self) -> dict[str, object]:
        """`extra=` fields tying a log line to this attempt (`log.info("...", extra=ctx.log_fields())`)."""
        spec = self.spec
        return job_fields(
            spec.job_id, queue=spec.queue, attempt=spec.attempt, worker_id=self.worker_id,
            traceparent=spec.trace_parent,
        )

    async def progress(
        self, current: float, total: float, stage: str | None = None, message: str | None = None
    ) -> None:
        """Report `current` of `total` (percent derived), with an optional stage and message; never waits for Kafka."""
        cur, tot = float(current), float(total)
        percent = 100.0 * cur / tot if tot > 0 else 0.0
        report: dict[str, Any] = {"percent": max(0.0, min(100.0, percent)), "current": cur, "total": tot}
        if stage is not None:
            report["stage"] = _bounded(stage, MAX_STAGE_CHARS)
        if message is not None:
            report["message"] = _bounded(message, MAX_LOG_CHARS)
        self._pending.progress = report
        self._kick()

    async def report_progress(self, percent: float, message: str | None = None) -> None:
        """Publish progress as a percentage without waiting for Kafka; reports made while one is in flight coalesce."""
        report: dict[str, Any] = {"percent": max(0.0, min(100.0, float(percent)))}
        if message is not None:
            report["message"] = _bounded(message, MAX_LOG_CHARS)
        self._pending.progress = report
        self._kick()

    def log(self, message: str) -> None:
        """Add a line to the job's log (GET /jobs/{id} `logs`, the last 200 kept); never blocks."""
        pending = self._pending
        pending.logs.append({
            "at": datetime.now(UTC).isoformat(), "attempt": self.attempt, "message": _bounded(message, MAX_LOG_CHARS),
        })
        if len(pending.logs) > MAX_PENDING_LOGS:
            del pending.logs[0]
            pending.dropped_logs += 1
        self._kick()

    async def checkpoint(self, state: Any) -> None:
        """Save `state` (JSON, at most 64 KiB): a later attempt of this job starts with it as `checkpoint_state`.

        Returns once the report carrying it was handed to Kafka (or failed: the attempt's outcome
        carries the latest checkpoint again). Raises ValueError for a state that is not JSON or too large.
        """
        value = encode_checkpoint(state)
        self._checkpoint = value
        self.checkpointed = True
        self._pending.checkpoint = value
        self._kick()
        sender = self._sender
        if sender is not None:
            await asyncio.shield(sender)

    def _kick(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name=f"progress:{self.job_id}")

    async def _send(self) -> None:
        # Only the latest progress and checkpoint matter: a slow broker never queues up stale ones.
        while not self._pending.empty:
            report, self._pending = self._pending, Report()
            try:
                await self._sink(report)
            except Exception as exc:
                # Reports are advisory and the next one supersedes them: count it, never fail the job.
                PROGRESS_DROPPED.inc()
                log.debug("progress report dropped: %r", exc, extra=self.log_fields())

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Let reports still on their way go out (bounded), before the attempt's outcome is published."""
        sender = self._sender
        if sender is not None and not sender.done():
            await asyncio.wait({sender}, timeout=timeout_s)

    async def close(self) -> None:
        """Drop what was not sent: the attempt is over."""
        self._pending = Report()
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
