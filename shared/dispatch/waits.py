"""What Redis says about a waiting job: the dispatch side of `waitingReason` (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.dispatch.records import WaitingJob, text


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


def wait_args(jobs: Sequence[WaitingJob]) -> list[str]:
    """waits.lua's arguments: per job its id, rate-limit key and concurrency key ('' for none)."""
    return [x for job in jobs for x in (str(job.job_id), job.rate_limit_key or "", job.concurrency_key or "")]


def wait_states_of(jobs: Sequence[WaitingJob], raw: Sequence[Any]) -> dict[Any, WaitState]:
    """waits.lua's reply for one queue's jobs, by job id."""
    paused = bool(int(raw[0]))
    out = {}
    for n, job in enumerate(jobs):
        waiting, ahead, cscope, running, limit, rscope, until = raw[1 + 7 * n:8 + 7 * n]
        cscope, rscope = text(cscope), text(rscope)
        out[job.job_id] = WaitState(
            paused=paused,
            ready=bool(int(waiting)),
            ahead=int(ahead) if int(ahead) >= 0 else None,
            concurrency=None if not cscope else ConcurrencyHold(
                job.concurrency_key if cscope == "k" else None, int(running), int(limit)
            ),
            rate=None if not rscope else RateHold(job.rate_limit_key if rscope == "k" else None, int(until)),
        )
    return out
