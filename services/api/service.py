"""ApiService: the pool, Redis, the Kafka producer, the outbox relay and the HTTP server, wired on BaseService."""

from __future__ import annotations

import logging

from services.api.http.app import create_app
from services.api.http.deps import ApiDeps
from shared.db.pool import close_pool, pool_for
from shared.dispatch.protocol import Dispatcher, connect
from shared.http_server import HttpServer
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.service import BaseService
from shared.settings import ApiSettings

log = logging.getLogger(__name__)

LAST_FLUSH_TIMEOUT_S = 3.0


class ApiService(BaseService):
    """Soft stop: stop taking requests (in-flight ones finish); then the relay's last flush, the producer,
    Redis and the pool close, in that order (reverse of opening)."""

    name = "api"

    def __init__(self, settings: ApiSettings) -> None:
        super().__init__(settings)
        self._settings = settings
        self._relay: OutboxRelay | None = None
        self._http: HttpServer | None = None

    @property
    def relay(self) -> OutboxRelay | None:
        """The outbox relay (for tests and diagnostics)."""
        return self._relay

    async def setup(self) -> None:
        """Open Postgres, Redis and Kafka, start the relay, then serve HTTP on `api_port`."""
        s = self._settings
        pool = await self.open(pool_for(s, session_reset=False), close=close_pool)  # no session state is left
        redis = connect(s.redis_url, timeout_s=s.redis_timeout_s)
        self.on_close("close redis", redis.aclose)
        producer = EventProducer(s, client_id="conveyor-api")
        await producer.start()  # tolerates a broker that is down: the outbox holds the events
        self.on_close("stop the kafka producer", producer.stop)
        relay = OutboxRelay(
            pool, producer, batch_size=s.outbox_batch_size, sweep_interval_s=s.outbox_sweep_interval_s,
            sweep_after_s=s.outbox_sweep_after_s,
        )
        # Registered after the producer, so it runs before the producer closes (and after the relay's
        # task was cancelled): what requests handed off in their last moments still goes out.
        self.on_close("flush the outbox relay", lambda: relay.flush(LAST_FLUSH_TIMEOUT_S))
        self._relay = relay
        self.spawn("outbox-relay", relay.run())
        deps = ApiDeps(settings=s, pool=pool, dispatcher=Dispatcher(redis, s.redis_key_prefix), relay=relay)
        # Queue config changes made through other replicas reach this one's submission rules at once.
        self.spawn("queue-rules-listener", deps.queue_rules.listen(s.database_url))
        self._http = await self.serve_http(create_app(deps), s.api_port)
        log.info("api listening on http://%s:%d", s.host, s.api_port)

    async def drain(self) -> None:
        """Stop taking requests first (uvicorn lets in-flight ones finish), then the base soft stop."""
        if self._http is not None:
            await self._http.stop()
        await super().drain()
