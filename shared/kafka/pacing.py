"""When a consumer fetches: pause its partitions between batches, and some topics for longer.

The embedded broker lists every stored batch of a partition on each fetch that finds new data,
so its cost is per fetch and per partition, not per record. Pacing makes fetches fewer and
fuller without adding the batch interval twice to a record's latency: aiokafka prefetches as
soon as a batch is handed over, and a fetch made then would wait in its buffer for the whole
interval; paused partitions are not fetched.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from aiokafka import TopicPartition


class Pausable(Protocol):
    """The part of AIOKafkaConsumer pacing needs."""

    def assignment(self) -> set[TopicPartition]: ...

    def paused(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...


class FetchPacer:
    """Pauses every partition after a batch; resumes most after `interval_s`, `slow_topics`
    only every `slow_interval_s` (events nobody waits on, fetched in larger batches)."""

    def __init__(self, interval_s: float, slow_topics: Collection[str] = (), slow_interval_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self._slow = frozenset(slow_topics)
        self._slow_interval_s = max(slow_interval_s, interval_s)
        self._slow_due = 0.0

    @property
    def enabled(self) -> bool:
        """Whether the consumer pauses at all."""
        return self.interval_s > 0 or bool(self._slow)

    def after_batch(self, consumer: Pausable) -> None:
        """Pause everything just handed over; call before yielding to the event loop."""
        if self.enabled:
            consumer.pause(*consumer.assignment())

    def resume_due(self, consumer: Pausable, now: float) -> None:
        """Resume the partitions whose wait is over at `now` (monotonic seconds)."""
        paused = consumer.paused()
        if not paused:
            return
        slow_due = now >= self._slow_due
        ready = [tp for tp in paused if slow_due or tp.topic not in self._slow]
        if slow_due and any(tp.topic in self._slow for tp in paused):
            self._slow_due = now + self._slow_interval_s
        if ready:
            consumer.resume(*ready)

    def wait_ms(self, consumer: Pausable, now: float, longest_ms: int) -> int:
        """How long a fetch may wait before slow partitions are due again."""
        if not any(tp.topic in self._slow for tp in consumer.paused()):
            return longest_ms
        return max(1, min(longest_ms, int((self._slow_due - now) * 1000) + 1))

