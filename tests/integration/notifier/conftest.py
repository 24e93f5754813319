"""A notifier running in-process on the session's Postgres and Tansu, and clients to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from deploy.local.servers import free_port
from services.notifier.service import NotifierService
from services.notifier.settings import NotifierServiceSettings
from shared.kafka.producer import EventProducer

NotifierFactory = Callable[..., contextlib.AbstractAsyncContextManager[NotifierService]]


@pytest.fixture
def notifier_settings(database_url: str, kafka_bootstrap: str, topic_prefix: str, kafka_topics: dict[str, str]
                      ) -> Callable[..., NotifierServiceSettings]:
    """Settings for a notifier of this test (auth required, as by default); keyword overrides win."""

    def make(**overrides: Any) -> NotifierServiceSettings:
        base: dict[str, Any] = dict(
            database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic_prefix=topic_prefix,
            notifier_port=free_port(), kafka_session_timeout_ms=1000, kafka_heartbeat_interval_ms=300,
            ws_close_timeout_s=20,
        )
        return NotifierServiceSettings(**(base | overrides))

    return make


@pytest.fixture
def start_notifier(notifier_settings: Callable[..., NotifierServiceSettings]) -> NotifierFactory:
    """`async with start_notifier(**overrides) as service:` — started, consumer assigned."""

    @contextlib.asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[NotifierService]:
        service = NotifierService(notifier_settings(**overrides))
        await service.start()
        try:
            assert service.consumer is not None
            # It starts at the latest offsets: produce only once it holds its partitions.
            await asyncio.wait_for(service.consumer.assigned.wait(), 30)
            yield service
        finally:
            await service.stop()
        assert not service.failed.is_set()

    return run


@pytest.fixture
async def notifier(start_notifier: NotifierFactory) -> AsyncIterator[NotifierService]:
    """A notifier with auth turned off (allowed on its loopback host): the protocol tests connect without a key."""
    async with start_notifier(auth_required=False) as service:
        yield service


@pytest.fixture
async def producer(notifier_settings: Callable[..., NotifierServiceSettings]) -> AsyncIterator[EventProducer]:
    """Publishes envelopes to this test's topics."""
    producer = EventProducer(notifier_settings(), client_id="notifier-test")
    await producer.start()
    yield producer
    await producer.stop()
