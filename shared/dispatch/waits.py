"""What Redis says about a waiting job: the dispatch side of `waitingReason` (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateHold:
    """A rate limit the job's next start waits on: `key` None is the queue's own limit."""

    key: str | None
    until_ms: int


@dataclass(frozen=True, slots=True)
class ConcurrencyHold:
    """A concurrency limit that is full: `key` None is the queue's own limit."""

    key: str | None
    running: int
    limit: int


@dataclass(frozen=True, slots=True)
class WaitState:
    """Why Redis is not handing out one waiting job right now (read at one instant)."""

    paused: bool = False
    ready: bool = False  # in the queue's ready set (not delayed, not leased, not absent)
    ahead: int | None = None  # jobs before it in dispatch order, when ready
    concurrency: ConcurrencyHold | None = None
    rate: RateHold | None = None
