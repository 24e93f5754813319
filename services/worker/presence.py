"""This worker's `worker_started` and `worker_stopped` (reason `shutdown`) on the `workers` topic.

Best effort, bounded: a lost announcement costs a dashboard an update, never a job. A worker
that dies without its clean stop is announced `gone` by the scheduler (services/scheduler/worker_sweep.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shared import worker_events
from shared.events import utcnow
from shared.kafka.producer import EventProducer
from shared.logs import job_fields

log = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT_S = 5.0


class Presence:
    """Announces the start and the clean stop of one worker, described by its registry entry."""

    def __init__(
        self, producer: EventProducer, worker_id: str, describe: Callable[[], dict[str, Any]],
        *, timeout_s: float = ANNOUNCE_TIMEOUT_S,
    ) -> None:
        self._producer = producer
        self._worker_id = worker_id
        self._describe = describe
        self._timeout = timeout_s

    async def started(self) -> None:
        """Publish `worker_started`."""
        await self._announce(worker_events.started(self._worker_id, self._describe(), at=utcnow()))

    async def stopped(self) -> None:
        """Publish `worker_stopped` with reason `shutdown` (the registry entry is removed too)."""
        doc = worker_events.stopped(
            self._worker_id, worker_events.StopReason.SHUTDOWN, at=utcnow(), entry=self._describe()
        )
        await self._announce(doc)

    async def _announce(self, doc: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(self._producer.publish([worker_events.message(doc)]), timeout=self._timeout)
        except Exception as exc:  # any publish failure: the announcement is a courtesy
            log.warning("could not announce %s: %r", doc["type"], exc, extra=job_fields(worker_id=self._worker_id))
