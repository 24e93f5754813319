"""The API app in-process (httpx.ASGITransport) on the session's real Postgres, Valkey and Tansu.

Auth is on unless a test turns it off: the client sends a real key of the default tenant with every
scope; `anonymous` is the same app without a key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.api.http.app import create_app
from services.api.http.deps import ApiDeps
from shared.auth.keys import create_api_key
from shared.auth.principal import ALL_SCOPES, DEFAULT_TENANT
from shared.db.pool import create_pool
from shared.dispatch.protocol import Dispatcher, connect
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.settings import ApiSettings


@dataclass
class Api:
    """A test's API: an HTTP client on the app (with `key`) plus the resources behind it."""

    app: FastAPI
    client: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    key: str
    pool: asyncpg.Pool
    dispatcher: Dispatcher
    relay: OutboxRelay
    settings: ApiSettings

    async def count(self, table: str) -> int:
        """Rows in a table (to prove a rejected request stored nothing)."""
        assert table in {"jobs", "outbox", "job_batches", "job_attempts", "job_events", "queues"}
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))

    async def submit(self, **fields: Any) -> str:
        """Submit a valid job (queue `q`, type `noop` unless given); returns its id."""
        body = {"queue": "q", "jobType": "noop", **fields}
        response = await self.client.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["jobId"])


def api_settings(database_url: str, redis_url: str, kafka: str, redis_prefix: str, topic_prefix: str,
                 **extra: Any) -> ApiSettings:
    """Settings for a test, independent of the environment the suite runs in (auth on unless said)."""
    extra.setdefault("auth_required", True)
    extra.setdefault("db_pool_max", 4)
    return ApiSettings(
        database_url=database_url, redis_url=redis_url, kafka_bootstrap_servers=kafka,
        redis_key_prefix=redis_prefix, kafka_topic_prefix=topic_prefix, kafka_request_timeout_ms=2000, **extra,
    )


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of an API key."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api_factory(
    database_url: str, redis_url: str, kafka_bootstrap: str, redis_prefix: str, topic_prefix: str
) -> AsyncIterator[Any]:
    """`await make(**settings overrides)` -> Api; everything is closed at the end of the test.

    `auth_required` is True unless overridden; the client always sends a real admin key of the default tenant.
    """
    opened: list[tuple[asyncpg.Pool, Any, EventProducer, list[httpx.AsyncClient]]] = []

    async def make(**overrides: Any) -> Api:
        kafka = overrides.pop("kafka_bootstrap_servers", kafka_bootstrap)
        redis_at = overrides.pop("redis_url", redis_url)
        settings = api_settings(database_url, redis_at, kafka, redis_prefix, topic_prefix, **overrides)
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_max)
        redis = connect(settings.redis_url)
        dispatcher = Dispatcher(redis, settings.redis_key_prefix)
        producer = EventProducer(settings, client_id="api-test")
        # The relay loop is not running: tests drain it explicitly, so "nothing was published" is checkable.
        relay = OutboxRelay(pool, producer, batch_size=settings.outbox_batch_size,
                            sweep_after_s=settings.outbox_sweep_after_s)
        key = await create_api_key(pool, DEFAULT_TENANT, ALL_SCOPES, "api-test")
        app = create_app(ApiDeps(settings=settings, pool=pool, dispatcher=dispatcher, relay=relay))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30, headers=bearer(key))
        anonymous = httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30)
        opened.append((pool, redis, producer, [client, anonymous]))
        return Api(app, client, anonymous, key, pool, dispatcher, relay, settings)

    yield make
    for pool, redis, producer, clients in opened:
        for client in clients:
            await client.aclose()
        await producer.stop()
        await redis.aclose()
        await pool.close()


@pytest.fixture
async def api(api_factory: Any) -> Api:
    """The default in-process API: auth required, the client holds an admin key of the default tenant."""
    made: Api = await api_factory()
    return made
