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
from services.worker.publisher import EventSink
from services.worker.registry import Registry, default_registry, load_modules, parse_modules
from shared.dispatch.protocol import Dispatcher, connect
from shared.events import utcnow
from shared.http_server import HttpServer, health_app
from shared.kafka.producer import EventProducer
from shared.settings import WorkerSettings
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

FETCH_STOP_S = 2.0
HAND_BACK_S = 4.0
READY_PING_S = 2.0


class WorkerService:
    """Runs jobs from Redis; `stop()` finishes in-flight jobs within drain_timeout_s, then hands the rest back."""

    name = "worker"

    def __init__(self, settings: WorkerSettings, *, registry: Registry | None = None) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or default_worker_id()
        self._registry = registry or default_registry
        self._tasks = TaskGroupOwner("worker")
        self._stopping = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self._stopped = False
        self._started_at = utcnow()
        self._redis: Redis | None = None
        self._producer: EventProducer | None = None
        self._sink: EventSink | None = None
        self._http: httpx.AsyncClient | None = None
        self._executor: Executor | None = None
        self._fetcher: Fetcher | None = None
        self._heartbeat: Heartbeat | None = None
        self._server: HttpServer | None = None
        self._fetch_task: asyncio.Task[Any] | None = None

    @property
    def failed(self) -> asyncio.Event:
        """Set when a background task crashed: the lifecycle then stops the worker."""
        return self._tasks.failed

    @property
    def executor(self) -> Executor | None:
        """The job table (None before start); tests and the registry entry read it."""
        return self._executor

    async def start(self) -> None:
        """Import handler modules, connect, serve health, and start fetching."""
        s = self.settings
        load_modules(parse_modules(s.worker_handler_modules))
        queues = [q.strip() for q in s.worker_queues.split(",") if q.strip()]
        self._redis = connect(s.redis_url, timeout_s=s.redis_timeout_s, max_connections=s.worker_concurrency + 32)
        dispatcher = Dispatcher(self._redis, s.redis_key_prefix)
        self._producer = EventProducer(s, client_id=f"conveyor-worker-{self.worker_id}")
        await self._producer.start()
        self._sink = EventSink(self._producer)
        self._http = httpx.AsyncClient(
            follow_redirects=True, timeout=30.0,
            limits=httpx.Limits(max_connections=s.worker_concurrency, max_keepalive_connections=20),
        )
        self._executor = Executor(
            dispatcher=dispatcher, sink=self._sink, registry=self._registry, worker_id=self.worker_id,
            concurrency=s.worker_concurrency, default_timeout_ms=s.default_timeout_ms, http=self._http,
            on_crash=lambda exc: self._tasks.failed.set(), trace_jobs=s.otel_exporter != "none",
        )
        self._fetcher = Fetcher(
            dispatcher, self._executor, worker_id=self.worker_id, queues=queues, lease_ms=s.lease_ms,
            refresh_interval_s=s.queue_refresh_interval_s, stopping=self._stopping,
        )
        self._heartbeat = Heartbeat(
            dispatcher, self._executor, worker_id=self.worker_id, lease_ms=s.lease_ms, describe=self._describe
        )
        self._server = HttpServer(health_app(self._ready), s.host, s.worker_port)
        await self._server.start()
        self._tasks.spawn("http", self._server.watch())
        await self._heartbeat_guarded_register()
        self._tasks.spawn("heartbeat", self._heartbeat.run())
        self._fetch_task = self._tasks.spawn("fetch", self._fetcher.run())
        log.info("worker %s serving %s with concurrency %d; job types: %s", self.worker_id,
                 ", ".join(queues) or "every queue", s.worker_concurrency, ", ".join(self._registry.types()))

    async def stop(self) -> None:
        """Stop fetching, drain, hand back what is left, then close everything; idempotent."""
        async with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping.set()
            await self._stop_fetching()
            if self._executor is not None:
                drained = await self._executor.drain(self.settings.drain_timeout_s)
                if not drained:
                    log.warning("drain timeout: handing unfinished jobs back")
                    await self._executor.hand_back(HAND_BACK_S)
                await self._executor.abandon()
            # The heartbeat ran through the drain to keep leases alive; now it may go.
            await self._tasks.cancel_all()
            if self._heartbeat is not None and self._redis is not None:
                await self._heartbeat.unregister()
            await self._close()

    async def _stop_fetching(self) -> None:
        task = self._fetch_task
        if task is None or task.done():
            return
        _, pending = await asyncio.wait({task}, timeout=FETCH_STOP_S)
        if pending:
            task.cancel()
            await asyncio.wait({task}, timeout=FETCH_STOP_S)

    async def _close(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self._executor is not None:
            await self._executor.close()
        if self._sink is not None:
            await self._sink.close()
        if self._producer is not None:
            await self._producer.stop()
        if self._http is not None:
            await self._http.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    async def _heartbeat_guarded_register(self) -> None:
        assert self._heartbeat is not None
        try:
            await self._heartbeat.register()
        except Exception as exc:
            # Redis may come up after us; the fetch loop and heartbeat keep retrying.
            log.warning("could not register worker %s yet: %r", self.worker_id, exc)

    async def _ready(self) -> bool:
        if self._redis is None or self._stopping.is_set():
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
            "concurrency": self.settings.worker_concurrency,
            "startedAt": self._started_at.isoformat(),
            "inFlight": len(job_ids),
            "jobIds": [str(j) for j in job_ids[:100]],
            "jobTypes": self._registry.types(),
            "status": "draining" if self._stopping.is_set() else "running",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }

