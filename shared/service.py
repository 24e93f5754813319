"""The one service contract: resources on an exit stack, owned tasks, a soft stop that turns hard.

Modelled on River's `startstop` and procrastinate's worker. A subclass only wires:

    class AnalyticsService(BaseService):
        name = "analytics"

        async def setup(self) -> None:
            pool = await self.open(pool_for(s), close=close_pool)   # closed last
            consumer = ConsumerLoop(...)
            self.spawn("consumer", consumer.run(), drain=consumer.stop)  # asked to finish first
            await self.serve_http(app, s.analytics_port)

`stop()` may be called twice, concurrently, or before `start()`, and returns only when
everything is closed: soft stop (stop taking work; drained tasks finish what they hold) for
up to `drain_timeout_s`, then hard stop (cancel every task), then the resources in reverse
order of opening, each close bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from shared.http_server import HttpServer
from shared.settings import CommonSettings
from shared.tasks import TaskGroupOwner

log = logging.getLogger(__name__)

T = TypeVar("T")

# One close may take this long before it is abandoned (logged), so the next one still runs.
CLOSE_TIMEOUT_S = 10.0
# After the drain deadline, cancelled tasks get this long to unwind.
HARD_STOP_S = 10.0


class BaseService:
    """Start/stop skeleton every service shares; subclasses implement `setup()` (and maybe `drain()`)."""

    name: str = "service"

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self._tasks = TaskGroupOwner(self.name)
        self._stack = contextlib.AsyncExitStack()
        self._drains: dict[str, Callable[[], object] | None] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._stopped = False

    @property
    def failed(self) -> asyncio.Event:
        """Set when an owned task crashed: the lifecycle then stops the service."""
        return self._tasks.failed

    # -- wiring helpers for setup() -------------------------------------------------------------

    async def setup(self) -> None:
        """Open resources with `open()`/`on_close()` and start tasks with `spawn()`."""
        raise NotImplementedError

    async def open(self, opening: Awaitable[T], *, close: Callable[[T], Awaitable[object]]) -> T:
        """Await `opening` and register `close(resource)` to run at stop, in reverse order of opening."""
        resource = await opening
        self.on_close(f"close {type(resource).__name__}", lambda: close(resource))
        return resource

    def on_close(self, what: str, close: Callable[[], Awaitable[object]]) -> None:
        """Run `close()` at stop (after every task ended), bounded, in reverse order of registration."""

        async def bounded() -> None:
            try:
                await asyncio.wait_for(close(), timeout=CLOSE_TIMEOUT_S)
            except Exception as exc:
                # One failed close must not keep the others open.
                log.warning("%s: %s failed: %r", self.name, what, exc)

        self._stack.push_async_callback(bounded)

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, drain: Callable[[], object] | bool = False
    ) -> asyncio.Task[Any]:
        """Start an owned task; a crash fails the service.

        `drain=True` (or a callable that asks it to finish, e.g. `consumer.stop`) makes it a task
        the soft stop waits for; other tasks are cancelled once the soft stop is over.
        """
        if drain:
            self._drains[name] = drain if callable(drain) else None
        return self._tasks.spawn(name, coro)

    async def serve_http(self, app: Any, port: int) -> HttpServer:
        """Serve `app` on the service's host and `port`; stopped when the service stops."""
        server = HttpServer(app, self.settings.host, port)
        await server.start()
        self.on_close("stop the HTTP server", server.stop)
        self.spawn("http", server.watch())
        return server

    # -- the contract -------------------------------------------------------------------------

    async def start(self) -> None:
        """Run `setup()`; if it fails, close what it opened and re-raise."""
        async with self._lock:
            if self._started or self._stopped:
                raise RuntimeError(f"{self.name} can be started once")
            self._started = True
            try:
                await self.setup()
            except BaseException:
                await self._shutdown()
                raise

    async def stop(self) -> None:
        """Soft stop within `drain_timeout_s`, then hard stop, then close; idempotent, safe before start."""
        async with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._started:
                await self._shutdown()

    async def drain(self) -> None:
        """Soft stop: ask drained tasks to finish and wait for them. Override to do more, then call super."""
        for ask in self._drains.values():
            if ask is not None:
                ask()
        await self._tasks.wait(*self._drains, timeout_s=self.settings.drain_timeout_s)

    async def _shutdown(self) -> None:
        self.stopping.set()
        try:
            # The drain's own steps are bounded by drain_timeout_s; this is the backstop.
            await asyncio.wait_for(self.drain(), timeout=self.settings.drain_timeout_s + HARD_STOP_S)
        except TimeoutError:
            log.warning("%s: soft stop took over %.0fs; stopping hard", self.name, self.settings.drain_timeout_s)
        except Exception:
            log.exception("%s: soft stop failed; stopping hard", self.name)
        await self._tasks.cancel_all(HARD_STOP_S)
        await self._stack.aclose()
