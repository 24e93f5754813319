"""ApiService: the pool, Redis, the Kafka producer, the outbox relay and the HTTP server, as one Service."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from redis.asyncio import Redis

from services.api.app import create_app
from services.api.deps import ApiDeps
from shared.db.pool import close_pool, pool_for
from shared.dispatch.protocol import Dispatcher, connect
from shared.http_server import HttpServer
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.settings import ApiSettings
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

LAST_FLUSH_TIMEOUT_S = 3.0


class ApiService:
    """`start()` opens everything and serves; `stop()` closes in reverse order (idempotent, safe before start)."""

    name = "api"

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._tasks = TaskGroupOwner("api")
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._producer: EventProducer | None = None
        self._relay: OutboxRelay | None = None
        self._http: HttpServer | None = None
        self._stopping = False

    @property
    def failed(self) -> asyncio.Event:
        """Set when the relay or the HTTP server dies."""
        return self._tasks.failed

    @property
    def relay(self) -> OutboxRelay | None:
        """The outbox relay (for tests and diagnostics)."""
        return self._relay

    async def start(self) -> None:
        """Open Postgres, Redis and Kafka, start the relay, then serve HTTP on `api_port`."""
        s = self.settings
        self._pool = await pool_for(s, session_reset=False)  # no session state is left on a connection here
        self._redis = connect(s.redis_url, timeout_s=s.redis_timeout_s)
        dispatcher = Dispatcher(self._redis, s.redis_key_prefix)
        self._producer = EventProducer(s, client_id="conveyor-api")
        await self._producer.start()  # tolerates a broker that is down: the outbox holds the events
        self._relay = OutboxRelay(
            self._pool, self._producer, batch_size=s.outbox_batch_size, sweep_interval_s=s.outbox_sweep_interval_s,
            sweep_after_s=s.outbox_sweep_after_s,
        )
        self._tasks.spawn("outbox-relay", self._relay.run())
        app = create_app(ApiDeps(settings=s, pool=self._pool, dispatcher=dispatcher, relay=self._relay))
        self._http = HttpServer(app, s.host, s.api_port)
        await self._http.start()
        self._tasks.spawn("http", self._http.watch())
        log.info("api listening on http://%s:%d", s.host, s.api_port)

    async def stop(self) -> None:
        """Stop taking requests, then the relay, the producer, Redis and the pool."""
        self._stopping = True
        http, self._http = self._http, None
        if http is not None:
            await http.stop()
        await self._tasks.cancel_all()
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.flush(LAST_FLUSH_TIMEOUT_S)
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        redis, self._redis = self._redis, None
        if redis is not None:
            try:
                await asyncio.wait_for(redis.aclose(), timeout=5)
            except (TimeoutError, OSError) as exc:
                log.warning("redis client did not close cleanly: %r", exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool)

