"""The submit transaction writes the outbox row; the relay publishes it to `{prefix}jobs.submitted`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from deploy.local.servers import free_port
from shared.errors import EventPublishError
from tests.fixtures.polling import poll_until
from tests.integration.api.conftest import Api

ENVELOPE_KEYS = {"eventId", "type", "schemaVersion", "occurredAt", "jobId", "queue", "jobType", "attempt", "data"}
SUBMITTED_DATA_KEYS = {"priority", "payload", "maxAttempts", "retry", "timeoutMs", "runAt", "dependsOn", "tags",
                       "batchId", "callbackUrl"}


async def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list[ConsumerRecord]:
    """Read `count` records of a topic from the beginning (no group: every partition)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records += batch
    finally:
        await consumer.stop()
    return records


def check_submitted_envelope(record: ConsumerRecord, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads(record.value)
    assert set(envelope) == ENVELOPE_KEYS
    assert record.key == job_id.encode()
    assert dict(record.headers)["tenant"] == b"default"
    assert envelope["type"] == "submitted"
    assert envelope["schemaVersion"] == 1
    assert envelope["jobId"] == job_id
    assert envelope["queue"] == body["queue"] and envelope["jobType"] == body["jobType"]
    assert envelope["attempt"] == 0
    uuid.UUID(envelope["eventId"])
    assert datetime.fromisoformat(envelope["occurredAt"]).tzinfo is not None
    assert set(envelope["data"]) == SUBMITTED_DATA_KEYS
    return envelope


async def test_the_sweep_publishes_the_submitted_envelope(
    api: Api, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    body = {"queue": "media", "jobType": "thumb", "payload": {"src": "a.png"}, "priority": 7, "tags": ["x"],
            "timeoutMs": 1000, "callbackUrl": "https://example.com/hook", "delayMs": 5000}
    response = await api.client.post("/api/v1/jobs", json=body)
    job_id = response.json()["jobId"]
    row = await api.pool.fetchrow("SELECT topic, key FROM outbox")
    assert (row["topic"], row["key"]) == ("jobs.submitted", job_id)
    assert api.relay.held == 1  # handed to the relay, whose loop is not running here

    assert await api.relay.drain_once() == 0  # a live writer's fresh rows are not swept
    assert await api.relay.drain_once(older_than_s=0) == 1
    assert await api.count("outbox") == 0  # deleted only once Kafka acknowledged
    [record] = await consume(kafka_bootstrap, kafka_topics["jobs.submitted"], 1)
    envelope = check_submitted_envelope(record, job_id, body)
    data = envelope["data"]
    assert data["priority"] == 7 and data["payload"] == {"src": "a.png"} and data["maxAttempts"] == 3
    assert data["retry"] is None  # none given (the worker resolves the default)
    assert data["timeoutMs"] == 1000 and data["tags"] == ["x"] and data["dependsOn"] == []
    assert data["batchId"] is None and data["callbackUrl"] == "https://example.com/hook"
    job = (await api.client.get(f"/api/v1/jobs/{job_id}")).json()
    assert datetime.fromisoformat(data["runAt"]) == datetime.fromisoformat(job["scheduledFor"])


async def wait_until_empty(api: Api, timeout_s: float = 10.0) -> None:
    async def empty() -> bool:
        return await api.count("outbox") == 0

    await poll_until(empty, timeout_s=timeout_s, every_s=0.02)


async def test_the_relay_publishes_handed_off_rows_and_deletes_them(
    api: Api, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    relay = asyncio.create_task(api.relay.run())
    try:
        ids = [await api.submit(payload={"i": i}) for i in range(5)]
        batch = await api.client.post("/api/v1/job-batches", json={"jobs": [{"queue": "q", "jobType": "noop"}] * 3})
        ids += batch.json()["jobIds"]
        records = await consume(kafka_bootstrap, kafka_topics["jobs.submitted"], 8)
        await wait_until_empty(api)
    finally:
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    assert sorted(r.key.decode() for r in records) == sorted(ids)
    assert api.relay.held == 0 and api.relay.published == 8


async def test_flush_at_shutdown_publishes_what_is_held(
    api: Api, kafka_topics: dict[str, str], kafka_bootstrap: str
) -> None:
    ids = [await api.submit() for _ in range(3)]
    assert api.relay.held == 3
    await api.relay.flush(timeout_s=10)
    assert api.relay.held == 0 and await api.count("outbox") == 0
    records = await consume(kafka_bootstrap, kafka_topics["jobs.submitted"], 3)
    assert sorted(r.key.decode() for r in records) == sorted(ids)


async def test_submissions_succeed_while_kafka_is_down(
    api_factory: Any, kafka_topics: dict[str, str], kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    down: Api = await api_factory(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    relay = asyncio.create_task(down.relay.run())
    try:
        ids = [await down.submit() for _ in range(3)]

        async def publish_failed() -> bool:
            return any(r.name == "shared.outbox" and "outbox relay:" in r.getMessage() for r in caplog.records)

        await poll_until(publish_failed, timeout_s=20)  # the relay tried, failed, and holds on to them
        assert down.relay.held == 3 and down.relay.published == 0
    finally:
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    with pytest.raises(EventPublishError):
        await down.relay.drain_once(older_than_s=0)
    await down.relay.flush(timeout_s=1)  # gives up quietly: the rows stay
    assert await down.count("outbox") == 3  # the failed publish rolled the claim back

    # Kafka is back (a relay that reaches it): the same rows go out.
    up: Api = await api_factory()
    assert await up.relay.drain_once(older_than_s=0) == 3
    records = await consume(kafka_bootstrap, kafka_topics["jobs.submitted"], 3)
    assert sorted(r.key.decode() for r in records) == sorted(ids)
    assert await up.count("outbox") == 0


async def test_rows_held_too_long_are_left_to_the_sweep(api_factory: Any, kafka_topics: dict[str, str]) -> None:
    """A writer stops retrying rows before they are old enough to sweep, so no row is sent by both."""
    down: Api = await api_factory(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", outbox_sweep_after_s=0.6)
    relay = asyncio.create_task(down.relay.run())
    try:
        [await down.submit() for _ in range(3)]

        async def let_go() -> bool:
            return down.relay.held == 0

        await poll_until(let_go)  # the relay exposes no event for letting go
    finally:
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    assert await down.count("outbox") == 3

    up: Api = await api_factory(outbox_sweep_after_s=0.6)

    async def old_enough() -> bool:
        # However soon the writer let go: the sweep's age is measured by Postgres's clock.
        query = "SELECT bool_and(created_at < now() - interval '0.6 seconds') FROM outbox"
        return bool(await up.pool.fetchval(query))

    await poll_until(old_enough)
    assert await up.relay.drain_once() == 3  # old enough now: the default age applies
