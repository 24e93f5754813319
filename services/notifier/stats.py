"""`queue_stats`: per tenant and queue, what the stream showed in the last interval (≤ 1 message/s/queue).

Only what a replica knows exactly from the events it read: counts by event type, rates, and
the durations of the jobs that completed. Backlog and running jobs need state from before the
replica started, so they are not here (GET /metrics/queues has them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.notifier.messages import Delivery, encode
from shared.events import EventType, utcnow

_Key = tuple[str, str]  # (tenant, queue)


@dataclass(slots=True)
class _Window:
    counts: dict[str, int] = field(default_factory=dict)
    duration_sum_ms: float = 0.0
    duration_max_ms: float = 0.0
    durations: int = 0


class QueueStats:
    """Counts the events of each (tenant, queue) and turns each interval into queue_stats messages."""

    def __init__(self, last_event_for: Callable[[str], str | None]) -> None:
        self._windows: dict[_Key, _Window] = {}
        self._active: set[_Key] = set()  # had events in the previous interval: owe one closing message
        self._last_event_for = last_event_for
        self._since = time.monotonic()

    def record(self, d: Delivery) -> None:
        """Count one job event (called by the fan-out for every new one: keep it cheap)."""
        if d.event_type is None or d.tenant is None or d.queue is None:
            return
        key = (d.tenant, d.queue)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        kind = d.event_type.value
        window.counts[kind] = window.counts.get(kind, 0) + 1
        if d.duration_ms is not None:
            window.durations += 1
            window.duration_sum_ms += d.duration_ms
            window.duration_max_ms = max(window.duration_max_ms, d.duration_ms)

    def flush(self) -> list[Delivery]:
        """The messages of the interval that just ended (a queue that went quiet gets one last, all zero)."""
        now = time.monotonic()
        interval = max(now - self._since, 1e-3)
        self._since = now
        windows, self._windows = self._windows, {}
        quiet = self._active - windows.keys()
        self._active = set(windows)
        at = utcnow().isoformat()
        out = [self._message(key, window, interval, at) for key, window in windows.items()]
        out += [self._message(key, _Window(), interval, at) for key in quiet]
        return out

    def _message(self, key: _Key, w: _Window, interval: float, at: str) -> Delivery:
        tenant, queue = key
        counts = {kind.value: w.counts.get(kind.value, 0) for kind in EventType}
        message = {
            "type": "queue_stats",
            "queue": queue,
            # Not an event of the log: the newest event this tenant's clients were sent before it, so a
            # client that resumes with it as `since` continues right after this message.
            "eventId": self._last_event_for(tenant),
            "at": at,
            "intervalS": round(interval, 3),
            "counts": counts,
            "perSecond": {
                "submitted": round(counts["submitted"] / interval, 3),
                "started": round(counts["started"] / interval, 3),
                "completed": round(counts["completed"] / interval, 3),
                "failed": round(counts["failed"] / interval, 3),
            },
            "durationMs": {"avg": round(w.duration_sum_ms / w.durations, 3), "max": w.duration_max_ms}
            if w.durations else None,
        }
        # Coalesced: a client that is behind gets the newest figures of a queue, not a backlog of them.
        return Delivery(kind="queue_stats", text=encode(message), tenant=tenant, queue=queue,
                        coalesce_key=f"queue_stats:{queue}")


async def run_ticker(stats: QueueStats, deliver: Callable[[Delivery], object], interval_s: float,
                     stopping: asyncio.Event) -> None:
    """Every `interval_s`, hand the interval's queue_stats to the hub, until `stopping` is set."""
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except TimeoutError:
            for delivery in stats.flush():
                deliver(delivery)
