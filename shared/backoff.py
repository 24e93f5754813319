"""One backoff for every reconnect and retry loop: capped exponential growth with full jitter.

Written here rather than taken from `tenacity`/`stamina`: our loops are "run until stopped,
back off after a failure, reset after a success", which those libraries model as a retry of
one call; fifteen lines fit the shape exactly and keep the stop event in charge.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays `initial_s`, times `factor` per failure, capped at `max_s`; `reset()` after a success."""

    initial_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    # Full jitter keeps many replicas that failed together from retrying together.
    jitter: bool = True
    _current: float = field(default=0.0, init=False, repr=False)

    def next_delay(self) -> float:
        """The delay before the next try; each call grows the one after it."""
        self._current = self.initial_s if self._current == 0.0 else min(self._current * self.factor, self.max_s)
        return random.uniform(self._current / 2, self._current) if self.jitter else self._current

    def reset(self) -> None:
        """Back to `initial_s` (call after a success)."""
        self._current = 0.0

    async def sleep(self, stop: asyncio.Event | None = None) -> bool:
        """Wait the next delay, or less if `stop` is set meanwhile; True when stopped."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True
