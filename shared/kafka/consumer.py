"""A consumer loop: fetch a batch, process it, then commit; stops between batches."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared import events
from shared.backoff import Backoff
from shared.kafka.pacing import FetchPacer
from shared.settings import CommonSettings
from shared.waiting import set_within, unless

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]
# The next offset to read, by partition.
Offsets = dict[TopicPartition, int]
IdleHook = Callable[[], None]


class ConsumerLoop:
    """Runs `handler` over batches of `topics`; commits only after the handler returned.

    With `group_id=None` every partition is read (each notifier replica sees every event)
    and nothing is committed; a consumer restarted after a broker error then goes on from the
    records it handled last (a fresh one would start at the newest offsets and skip what came
    meanwhile). `on_idle`, if given, is called whenever a fetch comes back empty
    (the loop has caught up with its partitions). With `in_flight` > 1, up to that many batches
    are handled at once (the next one is fetched and begun while the last one still waits on its
    database): for handlers whose batches commute; offsets are still committed in fetch order,
    each only once its batch and every batch before it were handled.
    """

    def __init__(
        self,
        settings: CommonSettings,
        *,
        topics: Sequence[str],
        group_id: str | None,
        handler: BatchHandler,
        client_id: str,
        auto_offset_reset: str = "earliest",
        max_records: int = 2000,
        commit_interval_s: float = 0.5,
        slow_topics: Sequence[str] = (),
        slow_interval_ms: int = 0,
        on_idle: IdleHook | None = None,
        in_flight: int = 1,
    ) -> None:
        self._settings = settings
        self._topics = [events.topic_name(settings.kafka_topic_prefix, t) for t in topics]
        self._group_id = group_id
        self._handler = handler
        self._client_id = client_id
        self._reset = auto_offset_reset
        self._max_records = max_records
        self._on_idle = on_idle
        self._in_flight = max(1, in_flight)
        self._commit_interval_s = commit_interval_s
        self._batch_interval_s = settings.kafka_batch_interval_ms / 1000
        self._pacer = FetchPacer(
            self._batch_interval_s,
            [events.topic_name(settings.kafka_topic_prefix, t) for t in slow_topics],
            slow_interval_ms / 1000,
        )
        self._stopping = asyncio.Event()
        self.assigned = asyncio.Event()
        # Without a group: the next offset of each partition after the records handled so far.
        self._handled: dict[TopicPartition, int] = {}

    def _consumer(self) -> AIOKafkaConsumer:
        s = self._settings
        return AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=self._client_id,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._reset,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(s.kafka_request_timeout_ms, s.kafka_session_timeout_ms + 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `stop()`; reconnects with backoff when the broker is unreachable."""
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while not self._stopping.is_set():
            consumer = self._consumer()
            try:
                await asyncio.wait_for(consumer.start(), timeout=30)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("kafka consumer %s cannot start: %r", self._client_id, exc)
                await _quiet_stop(consumer)
                await backoff.sleep(self._stopping)
                continue
            backoff.reset()
            self._go_on_from_handled(consumer)
            try:
                await self._consume(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("kafka consumer %s failed, restarting: %r", self._client_id, exc)
                await set_within(self._stopping, 1.0)
            finally:
                await _quiet_stop(consumer)

    def _go_on_from_handled(self, consumer: AIOKafkaConsumer) -> None:
        """Without a group, seek a restarted consumer to where the last one left off (a group resumes from
        its commits)."""
        if self._group_id is not None or not self._handled:
            return
        assigned = consumer.assignment()
        for tp, offset in self._handled.items():
            if tp in assigned:
                consumer.seek(tp, offset)
        log.info("kafka consumer %s goes on where it left off on %d partitions", self._client_id,
                 len(assigned & self._handled.keys()))

    def _done(self, pending: Offsets, offsets: Offsets) -> None:
        """A batch and every one before it are handled: its offsets may be committed (and resumed from)."""
        pending.update(offsets)
        if self._group_id is None:
            self._handled.update(offsets)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        loop = asyncio.get_running_loop()
        # Offsets of processed batches, committed at most every commit_interval_s: a commit is a
        # broker round trip, and handlers are idempotent, so a crash only replays a short tail.
        pending: Offsets = {}
        # Batches being handled, oldest first, with the offsets their end allows to commit.
        handling: deque[tuple[asyncio.Task[None], Offsets]] = deque()
        last_commit = loop.time()
        try:
            while not self._stopping.is_set():
                while handling and handling[0][0].done():
                    self._done(pending, handling.popleft()[1])
                fetched_at = loop.time()
                self._pacer.resume_due(consumer, fetched_at)
                # A stop cancels the fetch under way (and waits for it to unwind): nothing was handled yet.
                fetched, batches = await unless(self._stopping, self._getmany(consumer, fetched_at))
                if not fetched or batches is None:
                    return
                if consumer.assignment():
                    self.assigned.set()
                if batches:
                    records = [r for part in batches.values() for r in part]
                    offsets: Offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
                    if self._in_flight == 1:
                        await self._handle(records)
                        self._done(pending, offsets)
                    else:
                        while len(handling) >= self._in_flight:
                            await handling[0][0]
                            self._done(pending, handling.popleft()[1])
                        handling.append((asyncio.create_task(self._handle(records), name="consumer-batch"), offsets))
                    # Under a steady trickle every fetch returns at once with a record or two; the
                    # broker's cost is per fetch, so wait a moment to let the next batch fill up.
                    # A full batch means a backlog: waiting would only cap the throughput.
                    rest = self._batch_interval_s - (loop.time() - fetched_at)
                    if rest > 0 and len(records) < self._max_records:
                        await set_within(self._stopping, rest)
                elif self._on_idle is not None:
                    self._on_idle()
                now = loop.time()
                if pending and self._group_id is not None and now - last_commit >= self._commit_interval_s:
                    await self._commit(consumer, pending)
                    pending = {}
                    last_commit = now
        except asyncio.CancelledError:
            await _cancel_all(handling)
            raise
        finally:
            # A stop (or a broker error) lets the batches under way end first, as the loop would
            # have before its next fetch; a cancel ends them with it.
            try:
                while handling:
                    await handling[0][0]
                    self._done(pending, handling.popleft()[1])
            except asyncio.CancelledError:
                await _cancel_all(handling)
                raise
            if pending and self._group_id is not None:
                await self._commit(consumer, pending)

    async def _getmany(self, consumer: AIOKafkaConsumer, now: float) -> dict[TopicPartition, list[ConsumerRecord]]:
        timeout_ms = self._pacer.wait_ms(consumer, now, 1000)
        batches: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
            timeout_ms=timeout_ms, max_records=self._max_records
        )
        if batches and sum(len(records) for records in batches.values()) < self._max_records:
            # Before this task yields: aiokafka would otherwise prefetch at once (see pacing).
            # A full batch is not paced: there is more to read right away.
            self._pacer.after_batch(consumer)
        return batches

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        # Retry the batch until it goes through: handlers are idempotent, and skipping would
        # lose events. Handlers themselves skip undecodable records. Not cut short by `stop()`: the
        # batch is finished first (an owner that cannot wait cancels the loop).
        backoff = Backoff(initial_s=0.1, max_s=5.0)
        while True:
            try:
                await self._handler(records)
                return
            except Exception:
                log.exception("handler of %s failed on %d records; retrying", self._client_id, len(records))
                await backoff.sleep()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        # After a memory-broker restart a commit can retry forever (ghost topics): bound it.
        try:
            await asyncio.wait_for(consumer.commit(offsets), timeout=5)
        except (TimeoutError, KafkaError) as exc:
            log.warning("commit failed for %s (events may be redelivered): %r", self._client_id, exc)



def decode_records(records: Sequence[ConsumerRecord]) -> list[events.Envelope]:
    """Envelopes of the records that parse; junk is logged and skipped (never retried)."""
    return [envelope for envelope, _ in decode_records_with_values(records)]


def decode_records_with_values(records: Sequence[ConsumerRecord]) -> list[tuple[events.Envelope, bytes]]:
    """Each record that parses as (envelope, its raw value); junk is logged and skipped (never retried)."""
    out: list[tuple[events.Envelope, bytes]] = []
    for record in records:
        try:
            out.append((events.decode_record(record.value, record.headers), record.value))
        except ValueError as exc:
            log.error("skipping undecodable record %s:%s@%s: %s", record.topic, record.partition, record.offset, exc)
    return out


async def _cancel_all(handling: deque[tuple[asyncio.Task[None], Offsets]]) -> None:
    for task, _ in handling:
        task.cancel()
    await asyncio.gather(*(task for task, _ in handling), return_exceptions=True)
    handling.clear()


async def _quiet_stop(consumer: AIOKafkaConsumer) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), timeout=10)
    except Exception as exc:
        log.debug("ignoring error stopping consumer: %r", exc)
