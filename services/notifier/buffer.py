"""A client's bounded outgoing buffer: the fan-out puts without waiting, the client's sender takes."""

from __future__ import annotations

import asyncio
from collections import deque

from services.notifier import metrics
from shared.errors import ConveyorError

# DESIGN §7: an application close code (4000-4999), and a reason that says why.
CLOSE_TOO_SLOW = 4008
TOO_SLOW_REASON = "too slow: fell too far behind the event stream; reconnect with since"
CLOSE_RESTARTING = 1012  # the service is restarting


class BufferClosed(ConveyorError):
    """The client's stream is over (it fell too far behind, or the service is stopping)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Slot:
    __slots__ = ("key", "text")

    def __init__(self, text: str, key: str | None) -> None:
        self.text = text
        self.key = key


class ClientBuffer:
    """At most `limit` queued messages; a message with a coalesce key replaces its queued predecessor.

    Overflow closes the buffer (code 4008): the client is hopelessly behind and is disconnected
    rather than slowing the fan-out or growing without bound.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Replayed messages (a resume) still queued: they come on top of the limit.
        self._replaying = 0
        self._items: deque[_Slot] = deque()
        self._pending: dict[str, _Slot] = {}
        self._ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pressured(self) -> bool:
        """At least half full: the fan-out should give the senders a turn."""
        return len(self._items) * 2 >= self.limit

    def put(self, text: str, coalesce_key: str | None = None) -> bool:
        """Queue a message without waiting; False if the buffer is (now) closed."""
        if self.close_code is not None:
            return False
        if coalesce_key is not None:
            slot = self._pending.get(coalesce_key)
            if slot is not None:
                slot.text = text
                metrics.PROGRESS_COALESCED.inc()
                return True
        if len(self._items) >= self.limit + self._replaying:
            self.close(CLOSE_TOO_SLOW, TOO_SLOW_REASON)
            return False
        slot = _Slot(text, coalesce_key)
        self._items.append(slot)
        if coalesce_key is not None:
            self._pending[coalesce_key] = slot
        self._ready.set()
        return True

    def extend(self, texts: list[str]) -> None:
        """Queue a replay: it does not count against the limit, which still leaves room for live messages."""
        if self.close_code is not None or not texts:
            return
        self._items.extend(_Slot(text, None) for text in texts)
        self._replaying += len(texts)
        self._ready.set()

    def close(self, code: int, reason: str) -> None:
        """End the stream; queued messages are dropped. Idempotent (the first reason wins)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self._items.clear()
        self._pending.clear()
        self._ready.set()
        self.closed.set()

    async def wait(self) -> None:
        """Return once a message is queued or the buffer is closed (takes nothing: safe to cancel)."""
        while not self._items and self.close_code is None:
            self._ready.clear()
            await self._ready.wait()

    def take(self, max_items: int = 1) -> list[str]:
        """Up to `max_items` queued messages, oldest first; raises BufferClosed once closed."""
        if self.close_code is not None:
            raise BufferClosed(self.close_code, self.close_reason)
        out: list[str] = []
        while self._items and len(out) < max_items:
            slot = self._items.popleft()
            if slot.key is not None:
                del self._pending[slot.key]
            out.append(slot.text)
        if self._replaying:
            self._replaying = max(0, self._replaying - len(out))
        return out

    async def get(self) -> str:
        """The next message, waiting for one; raises BufferClosed once closed."""
        while True:
            await self.wait()
            taken = self.take(1)
            if taken:
                return taken[0]
