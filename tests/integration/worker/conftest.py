"""Fixtures of the worker tests: the test's settings, a dispatcher and an event tap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.dispatch.protocol import Dispatcher, connect
from tests.integration.worker.support import Env, EventTap


@pytest.fixture
def env(redis_url: str, kafka_bootstrap: str, redis_prefix: str, topic_prefix: str,
        kafka_topics: dict[str, str]) -> Env:
    """Servers and prefixes of this test (its topics exist)."""
    return Env(redis_url, kafka_bootstrap, redis_prefix, topic_prefix)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def dispatcher(redis: Redis, redis_prefix: str) -> Dispatcher:
    return Dispatcher(redis, redis_prefix)


@pytest.fixture
async def tap(env: Env) -> AsyncIterator[EventTap]:
    async with EventTap(env.settings()) as events:
        yield events
