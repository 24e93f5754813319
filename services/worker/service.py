"""The worker service: fetch, run, heartbeat, and a graceful drain on stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import httpx
from redis.asyncio import Redis

from services.worker.executor import Executor
from services.worker.fetcher import Fetcher
from services.worker.heartbeat import Heartbeat, default_worker_id
from services.worker.presence import Presence
from services.worker.publisher import EventSink
from services.worker.registry import Registry, default_registry, load_modules, parse_modules
from services.worker.retry_defaults import RetryDefaults, parse_type_defaults
from shared.dispatch.protocol import Dispatcher, connect
from shared.events import utcnow
from shared.http_server import health_app
from shared.kafka.producer import EventProducer
from shared.logs import job_fields
from shared.models import RetryPolicy
from shared.service import BaseService
from shared.settings import WorkerSettings

log = logging.getLogger(__name__)

FETCH_STOP_S = 2.0
HAND_BACK_S = 4.0
READY_PING_S = 2.0


class WorkerService(BaseService):
    """Runs jobs from Redis; `stop()` finishes in-flight jobs within drain_timeout_s, then hands the rest back.

    Resources open in the order Redis, HTTP client, producer, event sink, executor, health
    server, registry entry, and close in reverse. The heartbeat keeps leases alive through
    the drain; it is cancelled after it, before the registry entry is removed.
    """

    name = "worker"

    def __init__(self, settings: WorkerSettings, *, registry: Registry | None = None) -> None:
        super().__init__(settings)
        self._settings = settings
        self.worker_id = settings.worker_id or default_worker_id()
        self._registry = registry or default_registry
        self._started_at = utcnow()
        self._executor: Executor | None = None
        self._fetcher: Fetcher | None = None
        self._fetch_task: asyncio.Task[Any] | None = None
        self._redis: Redis | None = None

    @property
    def executor(self) -> Executor | None:
        """The job table (None before start); tests and the registry entry read it."""
        return self._executor

    async def setup(self) -> None:
        """Import handler modules, connect, serve health, register, and start fetching."""
        s = self._settings
        load_modules(parse_modules(s.worker_handler_modules))
        queues = [q.strip() for q in s.worker_queues.split(",") if q.strip()]
        redis = self._redis = connect(
            s.redis_url, timeout_s=s.redis_timeout_s, max_connections=s.worker_concurrency + 32
        )
        self.on_close("close Redis", redis.aclose)
        dispatcher = Dispatcher(redis, s.redis_key_prefix)
        http = httpx.AsyncClient(
            follow_redirects=True, timeout=30.0,
            limits=httpx.Limits(max_connections=s.worker_concurrency, max_keepalive_connections=20),
        )
        self.on_close("close the HTTP client", http.aclose)
        producer = EventProducer(s, client_id=f"conveyor-worker-{self.worker_id}")
        self.on_close("stop the Kafka producer", producer.stop)
        await producer.start()
        sink = EventSink(producer, worker_id=self.worker_id)
        self.on_close("close the event sink", sink.close)
        executor = self._executor = Executor(
            dispatcher=dispatcher, sink=sink, registry=self._registry, worker_id=self.worker_id,
            concurrency=s.worker_concurrency, default_timeout_ms=s.default_timeout_ms, http=http,
            on_crash=lambda exc: self.failed.set(), trace_jobs=s.otel_exporter != "none", lease_ms=s.lease_ms,
            retry_defaults=self._retry_defaults(dispatcher),
        )
        self.on_close("close the executor", executor.close)
        fetcher = self._fetcher = Fetcher(
            dispatcher, executor, worker_id=self.worker_id, queues=queues, lease_ms=s.lease_ms,
            refresh_interval_s=s.queue_refresh_interval_s, stopping=self.stopping,
        )
        heartbeat = Heartbeat(
            dispatcher, executor, worker_id=self.worker_id, lease_ms=s.lease_ms, describe=self._describe
        )
        await self.serve_http(health_app(self._ready), s.worker_port)
        # Registered last, so the entry goes first at stop: once the heartbeat has been cancelled.
        self.on_close("remove the registry entry", heartbeat.unregister)
        await self._register(heartbeat)
        presence = Presence(producer, self.worker_id, self._describe)
        await presence.started()
        self.on_close("announce the stop", presence.stopped)  # closes run in reverse: before the producer stops
        self.spawn("heartbeat", heartbeat.run())
        self.spawn("cancel watch", heartbeat.watch_cancels())
        self._fetch_task = self.spawn("fetch", fetcher.run())
        log.info("serving %s with concurrency %d; job types: %s", ", ".join(queues) or "every queue",
                 s.worker_concurrency, ", ".join(self._registry.types()), extra=job_fields(worker_id=self.worker_id))

    def _retry_defaults(self, dispatcher: Dispatcher) -> RetryDefaults:
        """Job type defaults: WORKER_RETRY_DEFAULTS wins over `@handler(..., retry=...)`; then the queue's."""
        configured = parse_type_defaults(self._settings.worker_retry_defaults)
        registry = self._registry

        def by_type(job_type: str) -> RetryPolicy | None:
            return configured.get(job_type) or registry.retry_policy(job_type)

        return RetryDefaults(dispatcher.dispatch_config, by_type)

    async def drain(self) -> None:
        """Stop fetching, let in-flight jobs finish within drain_timeout_s, hand back the rest."""
        await super().drain()
        executor = self._executor
        if executor is None:  # setup failed before there was any job
            return
        executor.stop_intake()  # ends a fetch loop's wait for a free slot
        await self._stop_fetching()
        if not await executor.drain(self._settings.drain_timeout_s):
            log.warning("drain timeout: handing unfinished jobs back", extra=job_fields(worker_id=self.worker_id))
            await executor.hand_back(HAND_BACK_S)
        await executor.abandon()

    async def _stop_fetching(self) -> None:
        task = self._fetch_task
        if task is None or task.done():
            return
        _, pending = await asyncio.wait({task}, timeout=FETCH_STOP_S)
        if pending:
            task.cancel()
            await asyncio.wait({task}, timeout=FETCH_STOP_S)

    async def _register(self, heartbeat: Heartbeat) -> None:
        try:
            await heartbeat.register()
        except Exception as exc:
            # Redis may come up after us; the fetch loop and heartbeat keep retrying.
            log.warning("could not register the worker yet: %r", exc, extra=job_fields(worker_id=self.worker_id))

    async def _ready(self) -> bool:
        if self._redis is None or self.stopping.is_set():
            return False
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), timeout=READY_PING_S))
        except Exception:
            return False

    def _describe(self) -> dict[str, Any]:
        """The registry entry other services read (GET /workers)."""
        executor, fetcher = self._executor, self._fetcher
        job_ids = executor.job_ids() if executor is not None else []
        return {
            "workerId": self.worker_id,
            "queues": fetcher.serving if fetcher is not None else [],
            "allQueues": fetcher.all_queues if fetcher is not None else True,
            "concurrency": self._settings.worker_concurrency,
            "startedAt": self._started_at.isoformat(),
            "inFlight": len(job_ids),
            "jobIds": [str(j) for j in job_ids[:100]],
            "jobTypes": self._registry.types(),
            "status": "draining" if self.stopping.is_set() else "running",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
