"""A notifier running in-process on the session's Postgres and Tansu (the shared `producer` feeds it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.notifier.service import NotifierService
from services.notifier.settings import NotifierServiceSettings
from tests.fixtures.resources import SettingsFactory

NotifierFactory = Callable[..., contextlib.AbstractAsyncContextManager[NotifierService]]

# A long close timeout; the drain and request timeouts these tests always had (the shared ones are shorter).
# queue_stats off: tests that count messages would see them every second (test_queue_stats turns them on).
NOTIFIER_TEST_DEFAULTS: dict[str, Any] = {
    "ws_close_timeout_s": 20, "drain_timeout_s": 30.0, "kafka_request_timeout_ms": 5000,
    "queue_stats_enabled": False,
}


@pytest.fixture
def start_notifier(service_settings: SettingsFactory, kafka_topics: dict[str, str]) -> NotifierFactory:
    """`async with start_notifier(**overrides) as service:` — started, consumer assigned; auth required
    (the default) unless an override says otherwise."""

    @contextlib.asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[NotifierService]:
        service = NotifierService(service_settings(NotifierServiceSettings, **(NOTIFIER_TEST_DEFAULTS | overrides)))
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
