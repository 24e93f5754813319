"""ConsumerLoop against the embedded broker: paced fetches lose nothing and slow topics wait."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError

from shared.kafka.consumer import ConsumerLoop
from shared.settings import CommonSettings
from tests.fixtures.polling import eventually
from tests.fixtures.resources import SettingsFactory

FAST, SLOW = "jobs.submitted", "jobs.completed"


async def test_paced_loop_delivers_every_record_and_fetches_slow_topics_less_often(
    kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, str], service_settings: SettingsFactory
) -> None:
    settings = service_settings(kafka_batch_interval_ms=20, kafka_fetch_max_wait_ms=20)
    batches: list[list[ConsumerRecord]] = []

    async def handler(records: list[ConsumerRecord]) -> None:
        batches.append(records)

    loop = ConsumerLoop(
        settings, topics=[FAST, SLOW], group_id=f"{topic_prefix}pacing", handler=handler,
        client_id="pacing-test", slow_topics=[SLOW], slow_interval_ms=400,
    )
    task = asyncio.create_task(loop.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    await producer.start()
    try:
        await asyncio.wait_for(loop.assigned.wait(), 20)
        sent = 0
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < 2.0:
            for logical in (FAST, SLOW):
                await producer.send_and_wait(kafka_topics[logical], str(sent).encode())
            sent += 1
            await asyncio.sleep(0.01)  # the load's shape (a steady trickle), not a synchronisation

        def received(logical: str) -> list[int]:
            return [int(r.value) for b in batches for r in b if r.topic == kafka_topics[logical]]

        await eventually(lambda: (len(received(FAST)), len(received(SLOW))), lambda got: min(got) >= sent)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()

    assert received(FAST) == list(range(sent)), "every fast record once, in order"
    assert received(SLOW) == list(range(sent)), "every slow record once, in order"
    with_slow = sum(1 for b in batches if any(r.topic == kafka_topics[SLOW] for r in b))
    with_fast = sum(1 for b in batches if any(r.topic == kafka_topics[FAST] for r in b))
    # ~2.2 s of records: the slow topic is fetched at most every 0.4 s, the fast one far more often.
    assert with_slow <= 8, with_slow
    assert with_fast >= 2 * with_slow, (with_fast, with_slow)


async def test_a_backlog_is_read_without_waiting_between_full_batches(
    kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, str], service_settings: SettingsFactory
) -> None:
    # 300 records in batches of at most 10 with a 1 s batch interval: paced, that is 30 s.
    settings = service_settings(kafka_batch_interval_ms=1000, kafka_fetch_max_wait_ms=20)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        await asyncio.gather(*(producer.send_and_wait(kafka_topics[FAST], str(i).encode()) for i in range(300)))
    finally:
        await producer.stop()
    got: list[int] = []
    all_read = asyncio.Event()

    async def handler(records: list[ConsumerRecord]) -> None:
        got.extend(int(r.value) for r in records)
        if len(got) >= 300:
            all_read.set()

    loop = ConsumerLoop(
        settings, topics=[FAST], group_id=f"{topic_prefix}backlog", handler=handler, client_id="backlog-test",
        max_records=10, slow_topics=[SLOW], slow_interval_ms=1000,
    )
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(all_read.wait(), 10)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 15)
    assert sorted(got) == list(range(300))


async def _produce(kafka_bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        await asyncio.gather(*(producer.send_and_wait(topic, str(i).encode()) for i in range(n)))
    finally:
        await producer.stop()


async def _read_all(settings: CommonSettings, group: str, n: int) -> list[int]:
    """Every record a fresh member of `group` is given until `n` distinct values were seen (its redeliveries)."""
    got: list[int] = []

    async def collect(records: list[ConsumerRecord]) -> None:
        got.extend(int(r.value) for r in records)

    loop = ConsumerLoop(settings, topics=[FAST], group_id=group, handler=collect, client_id="reader")
    task = asyncio.create_task(loop.run())
    try:
        await eventually(lambda: len(set(got)), lambda distinct: distinct >= n)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 15)
    return got


async def test_batches_in_flight_overlap_but_offsets_commit_only_in_fetch_order(
    kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, str], service_settings: SettingsFactory
) -> None:
    settings = service_settings(kafka_batch_interval_ms=0, kafka_fetch_max_wait_ms=20)
    await _produce(kafka_bootstrap, kafka_topics[FAST], 60)
    group = f"{topic_prefix}in-flight"
    gate = asyncio.Event()
    batches: list[list[int]] = []
    finished: list[list[int]] = []
    running = most = 0

    async def handler(records: list[ConsumerRecord]) -> None:
        nonlocal running, most
        values = [int(r.value) for r in records]
        batches.append(values)
        running += 1
        most = max(most, running)
        try:
            if len(batches) == 1:
                await gate.wait()  # the first batch waits (on its database, say)
            finished.append(values)
        finally:
            running -= 1

    loop = ConsumerLoop(settings, topics=[FAST], group_id=group, handler=handler, client_id="in-flight",
                        max_records=10, commit_interval_s=0.0, in_flight=2)
    task = asyncio.create_task(loop.run())
    try:
        # The second batch is handled while the first still waits; a third waits for the first.
        await eventually(lambda: len(finished), lambda n: n >= 1)
        await asyncio.sleep(0.5)  # room for a wrongly started third batch to show
        assert (most, len(batches), finished) == (2, 2, [batches[1]])
    finally:
        task.cancel()  # a hard stop: the waiting batch is cancelled, never committed
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # The second batch ended, but behind the unfinished first: neither was committed.
    again = await _read_all(settings, group, 60)
    assert set(batches[0]) | set(batches[1]) <= set(again[:20])
    assert sorted(set(again)) == list(range(60))


async def test_a_stop_lets_the_batches_in_flight_end_and_commits_them(
    kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, str], service_settings: SettingsFactory
) -> None:
    settings = service_settings(kafka_batch_interval_ms=0, kafka_fetch_max_wait_ms=20)
    await _produce(kafka_bootstrap, kafka_topics[FAST], 40)
    group = f"{topic_prefix}in-flight-stop"
    gate = asyncio.Event()
    seen: list[int] = []

    async def handler(records: list[ConsumerRecord]) -> None:
        seen.extend(int(r.value) for r in records)
        await gate.wait()

    loop = ConsumerLoop(settings, topics=[FAST], group_id=group, handler=handler, client_id="in-flight-stop",
                        max_records=10, in_flight=2)
    task = asyncio.create_task(loop.run())
    await eventually(lambda: len(seen), lambda n: n >= 20)
    loop.stop()
    await asyncio.sleep(0.2)
    assert not task.done(), "a stop waits for the batches under way"
    gate.set()
    await asyncio.wait_for(task, 15)
    # (a batch fetched before the stop is handled too, as without batches in flight)
    assert len(seen) in (20, 30) and len(set(seen)) == len(seen)
    # What the stopped loop handled was committed: the next member of the group gets only the rest.
    again = await _read_all(settings, group, 40 - len(seen))
    assert sorted(set(again)) == sorted(set(range(40)) - set(seen))


async def test_without_a_group_a_restarted_consumer_goes_on_where_the_last_one_left_off(
    kafka_bootstrap: str, kafka_topics: dict[str, str], service_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A notifier-style loop (no group, newest offsets at start) whose fetch fails once, as when the
    # broker goes away: the loop restarts its consumer about a second later. What was produced in
    # between must still come: a fresh consumer at the newest offsets would skip it.
    settings = service_settings(kafka_batch_interval_ms=0, kafka_fetch_max_wait_ms=20)
    got: list[int] = []
    failed = asyncio.Event()
    getmany = AIOKafkaConsumer.getmany

    async def getmany_failing_once(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if got and not failed.is_set():
            failed.set()
            raise KafkaConnectionError("the broker went away")
        return await getmany(self, *args, **kwargs)

    async def handler(records: list[ConsumerRecord]) -> None:
        got.extend(int(r.value) for r in records)

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany_failing_once)
    loop = ConsumerLoop(settings, topics=[FAST], group_id=None, handler=handler, client_id="no-group",
                        auto_offset_reset="latest")
    task = asyncio.create_task(loop.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    await producer.start()
    try:
        await asyncio.wait_for(loop.assigned.wait(), 20)
        await producer.send_and_wait(kafka_topics[FAST], b"0")
        await asyncio.wait_for(failed.wait(), 10)
        for i in range(1, 21):  # while the loop is between two consumers
            await producer.send_and_wait(kafka_topics[FAST], str(i).encode())
        await eventually(lambda: len(set(got)), lambda n: n >= 21, timeout_s=20)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 15)
        await producer.stop()
    assert sorted(got) == list(range(21)), "every record once"
