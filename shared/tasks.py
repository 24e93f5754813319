"""Owned background tasks: named, watched, cancelled and awaited on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskGroupOwner:
    """Holds a service's side tasks; the first one to crash sets `failed` so the service stops."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a named task; a task that ends with an exception fails the owner loudly."""
        task = asyncio.create_task(coro, name=f"{self.owner}.{name}")
        self._tasks[name] = task
        task.add_done_callback(self._on_done)
        return task

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s crashed", task.get_name(), exc_info=exc)
            if self.failure is None:
                self.failure = exc
            self.failed.set()

    async def cancel_all(self, timeout_s: float = 10.0) -> None:
        """Cancel every task and wait for them (bounded); safe to call twice."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                log.error("task %s did not stop within %.0fs", task.get_name(), timeout_s)
        self._tasks.clear()

    async def wait(self, *names: str, timeout_s: float) -> bool:
        """Wait for these tasks to finish by themselves, under one deadline; False if any is still running."""
        tasks = {t for name in names if (t := self._tasks.get(name)) is not None and not t.done()}
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            log.warning("task %s did not finish within %.0fs", task.get_name(), timeout_s)
        return not pending
