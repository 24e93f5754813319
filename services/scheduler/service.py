"""The scheduler service: consumer, promoter, lease requeuer, reconciler, outbox relay, health server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from redis.asyncio import Redis

from services.scheduler.consumer import GROUP, PROJECTED_TOPICS, TOPICS, ConsumerLag, EventHandler
from services.scheduler.leases import LeaseRequeuer
from services.scheduler.loops import TRANSIENT, run_every
from services.scheduler.promoter import PROMOTE_LIMIT, Promoter
from services.scheduler.reconciler import Reconciler
from services.scheduler.redis_ops import RedisSteps
from services.scheduler.txn import Committer
from shared.db.pool import close_pool, pool_for
from shared.dispatch.protocol import Dispatcher, connect
from shared.http_server import HttpServer, health_app
from shared.kafka.consumer import ConsumerLoop
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.settings import SchedulerSettings
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0


class SchedulerService:
    """Owns every resource of the scheduler; `stop()` is idempotent and safe before `start()`."""

    name = "scheduler"

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self._tasks = TaskGroupOwner(self.name)
        self._stop = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._producer: EventProducer | None = None
        self._relay: OutboxRelay | None = None
        self._consumer: ConsumerLoop | None = None
        self._http: HttpServer | None = None
        self._started = False
        self._stopped = False
        self.dispatcher: Dispatcher | None = None
        self.handler: EventHandler | None = None
        self.reconciler: Reconciler | None = None

    @property
    def failed(self) -> asyncio.Event:
        """Set when an owned task crashed."""
        return self._tasks.failed

    @property
    def consumer_assigned(self) -> asyncio.Event | None:
        """Set once the consumer has its partitions (tests wait for it)."""
        return self._consumer.assigned if self._consumer is not None else None

    async def start(self) -> None:
        """Connect, then start every loop; raises if Postgres or Redis cannot be reached."""
        s = self.settings
        self._started = True
        self._pool = await pool_for(s)
        self._redis = connect(s.redis_url, timeout_s=s.redis_timeout_s)
        await asyncio.wait_for(self._redis.ping(), timeout=s.redis_timeout_s)
        dispatcher = Dispatcher(self._redis, s.redis_key_prefix)
        self.dispatcher = dispatcher
        self._producer = EventProducer(s, client_id="scheduler")
        await self._producer.start()
        self._relay = OutboxRelay(self._pool, self._producer, sweep_after_s=s.outbox_sweep_after_s)
        committer = Committer(self._pool, self._relay, RedisSteps(dispatcher, timeout_s=s.redis_timeout_s))
        lag = ConsumerLag()
        self.handler = EventHandler(committer, lag)
        # The group carries the topic prefix so clusters sharing a broker (tests) stay apart;
        # with no prefix it is plainly "scheduler".
        self._consumer = ConsumerLoop(
            s, topics=TOPICS, group_id=f"{s.kafka_topic_prefix}{GROUP}", handler=self.handler,
            client_id="scheduler", auto_offset_reset="earliest",
            slow_topics=PROJECTED_TOPICS, slow_interval_ms=s.projection_interval_ms,
        )
        promoter = Promoter(committer, dispatcher)
        requeuer = LeaseRequeuer(committer, dispatcher)
        self.reconciler = Reconciler(
            committer, dispatcher, grace_s=s.reconcile_grace_s, lag=lag,
            lag_window_s=2 * s.reconcile_interval_s, stop=self._stop,
        )

        # Requeuing an expired lease puts the next attempt in the delayed set due at once; the
        # promoter must not dispatch it before the lost attempt is recorded, or the row moves to
        # the next attempt first and the lost one is never closed. One lock orders the two.
        redis_moves = asyncio.Lock()

        async def promote() -> bool:
            # A full batch means more are due: promote again at once.
            async with redis_moves:
                return await promoter.tick() >= PROMOTE_LIMIT

        async def requeue() -> bool:
            async with redis_moves:
                await requeuer.tick()
            return False

        self._tasks.spawn("outbox-relay", self._relay.run())
        self._tasks.spawn("consumer", self._consumer.run())
        self._tasks.spawn("promoter", run_every("promoter", s.promote_interval_s, self._stop, promote))
        self._tasks.spawn("lease-requeuer", run_every("lease requeuer", s.lease_check_interval_s, self._stop, requeue))
        self._tasks.spawn(
            "reconciler", run_every("reconciler", s.reconcile_interval_s, self._stop, self.reconciler.tick)
        )
        self._http = HttpServer(health_app(self.ready), s.host, s.scheduler_port)
        await self._http.start()
        self._tasks.spawn("http", self._http.watch())

    async def ready(self) -> bool:
        """Postgres and Redis both answer."""
        if self._pool is None or self._redis is None:
            return False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
                await self._redis.ping()
        except TRANSIENT:
            return False
        return True

    async def stop(self) -> None:
        """Finish the current batch and ticks, flush the outbox, then release everything."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            return
        self._stop.set()
        if self._consumer is not None:
            self._consumer.stop()
        drain = self.settings.drain_timeout_s
        for name in ("consumer", "promoter", "lease-requeuer", "reconciler"):
            if not await self._tasks.wait(name, timeout_s=drain):
                log.warning("%s did not finish within %.0fs; cancelling it", name, drain)
        if self._http is not None:
            await self._http.stop()
        await self._tasks.cancel_all()
        if self._relay is not None:
            # Publish what the last transactions committed; leftovers wait for a sweep.
            await self._relay.flush(timeout_s=5)
        if self._producer is not None:
            await self._producer.stop()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), timeout=5)
        if self._pool is not None:
            await close_pool(self._pool)

