"""FetchPacer: what is paused after a batch and when each partition is fetched again."""

from __future__ import annotations

from aiokafka import TopicPartition

from shared.kafka.pacing import FetchPacer

FAST = TopicPartition("p.jobs.submitted", 0)
SLOW = TopicPartition("p.jobs.completed", 0)


class Consumer:
    """The pause state of a consumer assigned FAST and SLOW (aiokafka keeps it the same way)."""

    def __init__(self) -> None:
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return {FAST, SLOW}

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)


def test_without_interval_or_slow_topics_nothing_is_paused() -> None:
    consumer = Consumer()
    FetchPacer(0.0).after_batch(consumer)
    assert consumer.paused() == set()


def test_after_a_batch_everything_is_paused_until_resumed() -> None:
    consumer = Consumer()
    pacer = FetchPacer(0.03)
    pacer.after_batch(consumer)
    assert consumer.paused() == {FAST, SLOW}
    pacer.resume_due(consumer, now=100.0)
    assert consumer.paused() == set()


def test_slow_topics_are_resumed_only_once_per_slow_interval() -> None:
    consumer = Consumer()
    pacer = FetchPacer(0.03, slow_topics=[SLOW.topic], slow_interval_s=0.2)
    pacer.resume_due(consumer, now=100.0)  # nothing paused yet: nothing to do
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=100.03)
    assert consumer.paused() == set(), "the first resume finds the slow topics due"

    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=100.06)
    assert consumer.paused() == {SLOW}
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=100.2)
    assert consumer.paused() == {SLOW}
    pacer.resume_due(consumer, now=100.24)
    assert consumer.paused() == set()


def test_fetch_wait_ends_when_slow_topics_are_due() -> None:
    consumer = Consumer()
    pacer = FetchPacer(0.03, slow_topics=[SLOW.topic], slow_interval_s=0.2)
    assert pacer.wait_ms(consumer, now=0.0, longest_ms=1000) == 1000
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=10.0)
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=10.05)
    assert consumer.paused() == {SLOW}
    assert 140 <= pacer.wait_ms(consumer, now=10.05, longest_ms=1000) <= 151
    assert pacer.wait_ms(consumer, now=10.5, longest_ms=1000) == 1


def test_slow_interval_is_never_shorter_than_the_batch_interval() -> None:
    consumer = Consumer()
    pacer = FetchPacer(0.5, slow_topics=[SLOW.topic], slow_interval_s=0.1)
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=1.0)
    pacer.after_batch(consumer)
    pacer.resume_due(consumer, now=1.2)
    assert consumer.paused() == {SLOW}
