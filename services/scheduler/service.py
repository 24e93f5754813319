"""The scheduler service: consumer, promoter, ager, lease requeuer, reconciler, outbox relay, health server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from redis.asyncio import Redis

from services.scheduler import store
from services.scheduler.consumer import GROUP, PROJECTED_TOPICS, TOPICS, ConsumerLag, EventHandler
from services.scheduler.cron import CronFirer, CronLease
from services.scheduler.leases import LeaseRequeuer
from services.scheduler.loops import TRANSIENT, run_every
from services.scheduler.promoter import PROMOTE_LIMIT, Promoter
from services.scheduler.reconciler import Reconciler
from services.scheduler.redis_steps import RedisSteps
from services.scheduler.txn import Committer
from services.scheduler.worker_sweep import SWEEP_INTERVAL_S, WorkerSweep
from shared.db.pool import close_pool, pool_for
from shared.dispatch.protocol import Dispatcher, connect
from shared.http_server import health_app
from shared.kafka.consumer import ConsumerLoop
from shared.kafka.producer import EventProducer
from shared.outbox import OutboxRelay
from shared.service import BaseService
from shared.settings import SchedulerSettings

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
# How often waiting jobs of queues with `aging` are moved up; an aging step is at most this late.
AGE_INTERVAL_S = 0.25
AGE_LIMIT = 1000
RELAY_FLUSH_S = 5.0


async def _close_redis(redis: Redis) -> None:
    await redis.aclose()


async def _ping(redis: Redis, timeout_s: float) -> Redis:
    """The client, once Redis answered (start fails fast without it)."""
    try:
        await asyncio.wait_for(redis.ping(), timeout=timeout_s)
    except BaseException:
        with contextlib.suppress(Exception):
            await redis.aclose()
        raise
    return redis


class SchedulerService(BaseService):
    """Wiring only: each loop stops on `stopping` and is drained; resources close in reverse order."""

    name = "scheduler"

    def __init__(self, settings: SchedulerSettings) -> None:
        super().__init__(settings)
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._consumer: ConsumerLoop | None = None
        self.dispatcher: Dispatcher | None = None
        self.handler: EventHandler | None = None
        self.reconciler: Reconciler | None = None
        self.worker_sweep: WorkerSweep | None = None

    @property
    def consumer_assigned(self) -> asyncio.Event | None:
        """Set once the consumer has its partitions (tests wait for it)."""
        return self._consumer.assigned if self._consumer is not None else None

    async def setup(self) -> None:
        """Connect (fails fast if Postgres or Redis do not answer), then start every loop and serve health."""
        s = self._settings
        self._pool = pool = await self.open(pool_for(s), close=close_pool)
        self._redis = redis = await self.open(
            _ping(connect(s.redis_url, timeout_s=s.redis_timeout_s), s.redis_timeout_s), close=_close_redis
        )
        self.dispatcher = dispatcher = Dispatcher(redis, s.redis_key_prefix)
        producer = await self.open(self._started_producer(), close=lambda p: p.stop())
        relay = OutboxRelay(pool, producer, sweep_after_s=s.outbox_sweep_after_s)
        # Closed first: publish what the last transactions committed; leftovers wait for a sweep.
        self.on_close("flush the outbox relay", lambda: relay.flush(timeout_s=RELAY_FLUSH_S))
        committer = Committer(pool, relay, RedisSteps(dispatcher, timeout_s=s.redis_timeout_s))
        lag = ConsumerLag()
        self.handler = EventHandler(committer, lag)
        # The group carries the topic prefix so clusters sharing a broker (tests) stay apart;
        # with no prefix it is plainly "scheduler".
        self._consumer = consumer = ConsumerLoop(
            s, topics=TOPICS, group_id=f"{s.kafka_topic_prefix}{GROUP}", handler=self.handler,
            client_id="scheduler", auto_offset_reset="earliest",
            slow_topics=PROJECTED_TOPICS, slow_interval_ms=s.projection_interval_ms,
        )
        promoter = Promoter(committer, dispatcher)
        requeuer = LeaseRequeuer(committer, dispatcher, lag)
        self.reconciler = Reconciler(
            committer, dispatcher, grace_s=s.reconcile_grace_s, lag=lag,
            lag_window_s=2 * s.reconcile_interval_s, stop=self.stopping,
        )

        async def promote() -> bool:
            # A full batch means more are due: promote again at once.
            return await promoter.tick() >= PROMOTE_LIMIT

        async def age() -> bool:
            # A full batch means more are due: age again at once.
            return await dispatcher.age_due(limit=AGE_LIMIT) >= AGE_LIMIT

        async def requeue() -> bool:
            await requeuer.tick()
            return False

        cron = CronFirer(committer, CronLease(redis, s.redis_key_prefix, s.cron_lease_ms),
                         misfire_grace_s=s.cron_misfire_grace_s)
        self.on_close("release the cron lease", cron.release)
        self.spawn("outbox-relay", relay.run())
        self.spawn("consumer", consumer.run(), drain=consumer.stop)
        self.spawn("promoter", run_every("promoter", s.promote_interval_s, self.stopping, promote), drain=True)
        self.spawn("ager", run_every("ager", AGE_INTERVAL_S, self.stopping, age), drain=True)
        self.spawn(
            "lease-requeuer", run_every("lease requeuer", s.lease_check_interval_s, self.stopping, requeue), drain=True
        )
        self.spawn(
            "reconciler", run_every("reconciler", s.reconcile_interval_s, self.stopping, self.reconciler.tick),
            drain=True,
        )
        self.spawn("cron", run_every("cron", s.cron_poll_interval_s, self.stopping, cron.tick), drain=True)
        self.worker_sweep = sweep = WorkerSweep(committer, redis, dispatcher.keys)
        self.spawn("worker-sweep", run_every("worker sweep", SWEEP_INTERVAL_S, self.stopping, sweep.tick), drain=True)
        await self.serve_http(health_app(self.ready), s.scheduler_port)

    async def _started_producer(self) -> EventProducer:
        producer = EventProducer(self._settings, client_id="scheduler")
        await producer.start()
        return producer

    async def ready(self) -> bool:
        """Postgres and Redis both answer."""
        if self._pool is None or self._redis is None:
            return False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await store.ping(self._pool, PROBE_TIMEOUT_S)
                await self._redis.ping()
        except TRANSIENT:
            return False
        return True
