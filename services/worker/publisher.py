"""Publishing a job's events: batched across jobs, retried until Kafka acknowledges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from services.worker.coalescer import Coalescer
from services.worker.metrics import PUBLISH_RETRIES
from shared.backoff import Backoff
from shared.errors import EventPublishError
from shared.events import Envelope
from shared.kafka.producer import EventProducer, OutgoingMessage, message_for
from shared.logs import job_fields

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


class EventSink:
    """Sends envelopes through one producer; concurrent sends share a flush."""

    def __init__(self, producer: EventProducer, *, worker_id: str | None = None) -> None:
        # Several flushes at once: the producer batches on the wire itself (linger), and a
        # flush waiting for its ack must not hold back the jobs that finish meanwhile.
        self._coalescer: Coalescer[OutgoingMessage] = Coalescer("events", producer.publish, max_in_flight=8)
        self._worker_id = worker_id

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """One try; raises EventPublishError when Kafka did not acknowledge."""
        # Build the messages here, in the job's task, so the trace headers are the job's.
        messages = [message_for(e) for e in envelopes]
        if len(messages) == 1:
            await self._coalescer.submit(messages[0])
        else:
            await asyncio.gather(*(self._coalescer.submit(m) for m in messages))

    async def publish_until_acked(self, envelopes: Sequence[Envelope], give_up: Callable[[], bool]) -> bool:
        """Retry with bounded backoff until acknowledged (True) or `give_up()` says stop (False)."""
        backoff: Backoff | None = None  # made on the first failure only: this runs twice per job
        while not give_up():
            try:
                await self.publish(envelopes)
                return True
            except EventPublishError as exc:
                PUBLISH_RETRIES.inc()
                backoff = backoff or Backoff(RETRY_FIRST_S, RETRY_MAX_S)
                delay = backoff.next_delay()
                first = envelopes[0]
                log.warning("publishing %s failed, retrying in %.1fs: %s", first.type, delay, exc, extra=job_fields(
                    first.job_id, queue=first.queue, attempt=first.attempt, worker_id=self._worker_id,
                    traceparent=first.trace_parent,
                ))
            await asyncio.sleep(delay)
        return False

    async def close(self) -> None:
        """Abandon a flush in flight (only at the very end of a stop)."""
        await self._coalescer.close()
