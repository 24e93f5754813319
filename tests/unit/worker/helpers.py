"""Building blocks for worker unit tests: specs and contexts without any server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from services.worker.context import JobContext, ProgressSink, Report
from shared.models import JobSpec, RetryPolicy


def make_spec(job_type: str = "noop", payload: dict[str, Any] | None = None, **extra: Any) -> JobSpec:
    """A spec with small, deterministic retry delays unless told otherwise."""
    extra.setdefault("retry", RetryPolicy(base_delay_ms=100, max_delay_ms=10_000, jitter=False))
    return JobSpec(job_id=uuid.uuid4(), queue="q", job_type=job_type, payload=payload or {}, **extra)


class ProgressLog:
    """A progress sink that records what it was sent: `reports` (percent, message) of the progress
    reports, `sent` every report whole."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, str | None]] = []
        self.sent: list[Report] = []
        self._changed = asyncio.Event()

    async def __call__(self, report: Report) -> None:
        self.sent.append(report)
        if report.progress is not None:
            self.reports.append((report.progress["percent"], report.progress.get("message")))
        self._changed.set()

    @property
    def lines(self) -> list[str]:
        """Every log line sent, in order."""
        return [line["message"] for report in self.sent for line in report.logs]

    async def wait_for(self, count: int, timeout_s: float = 2.0) -> None:
        """Until at least `count` reports arrived (progress is sent by a task of its own)."""
        async with asyncio.timeout(timeout_s):
            while len(self.reports) < count:
                self._changed.clear()
                await self._changed.wait()


def make_ctx(
    spec: JobSpec, http: httpx.AsyncClient | None = None, sink: ProgressSink | None = None
) -> JobContext:
    """A context whose HTTP client never touches the network unless given a transport."""
    client = http or httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(599)))
    return JobContext(spec, worker_id="w-test", http=client, progress_sink=sink or ProgressLog())
