"""Coalesce concurrent per-job calls into batch calls (one Lua script, one Kafka flush)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

Flush = Callable[[Sequence[T]], Awaitable[object]]


class Coalescer(Generic[T]):
    """`await submit(item)` returns once a batch holding `item` was flushed (or raises its error).

    Everything submitted in one loop tick goes out as one batch. At most `max_in_flight`
    flushes run at once; items submitted meanwhile wait for a free flush, so batches grow
    with load by themselves and an idle caller pays no more than one loop tick.
    """

    def __init__(self, name: str, flush: Flush[T], *, max_batch: int = 1000, max_in_flight: int = 1) -> None:
        self._name = name
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, item: T) -> None:
        """Queue `item` for the next batch and wait for that batch's result."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._kick()
        await future

    def _kick(self) -> None:
        if self._pending and not self._closed and not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            task = asyncio.create_task(self._run(), name=f"coalesce:{self._name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        # One tick lets every job that finished in the same loop iteration join the batch.
        await asyncio.sleep(0)
        self._scheduled = False
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if not batch:
            return
        self._in_flight += 1
        self._kick()  # an overflow beyond max_batch may start its own flush
        try:
            await self._flush([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
        finally:
            self._in_flight -= 1
            self._kick()

    async def close(self) -> None:
        """Cancel flushes in flight (their callers see CancelledError); safe to call twice."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
