"""Helpers of the dispatch-core tests: specs with scheduling keys, configured queues, a pop loop."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from shared.dispatch.config import DispatchConfig
from shared.dispatch.protocol import Dispatcher, Lease
from shared.models import JobSpec


def job(queue: str = "q", priority: int = 5, **keys: str | None) -> JobSpec:
    """A spec of `queue` with optional fairness_key / rate_limit_key / concurrency_key."""
    return JobSpec(job_id=uuid.uuid4(), queue=queue, job_type="noop", payload={}, priority=priority, **keys)  # type: ignore[arg-type]


async def paused_with(d: Dispatcher, specs: list[JobSpec], config: DispatchConfig | None = None) -> None:
    """Push `specs` in order into their queue, paused meanwhile; then resume it with `config`."""
    config = config or DispatchConfig()
    queue = specs[0].queue
    await d.configure(queue, dataclasses.replace(config, paused=True))
    for i in range(0, len(specs), 100):
        await d.push([(s, 0) for s in specs[i:i + 100]])
    await d.configure(queue, config)


async def drain(
    d: Dispatcher, queue: str, total: int, *, per_pop: int = 10, timeout_s: float = 30, into: list[Lease] | None = None
) -> list[Lease]:
    """Pop (and release) until `total` jobs started (in `into`, which several drains may share), waiting
    as pop's hint says, like a worker."""
    started: list[Lease] = [] if into is None else into

    async def loop() -> None:
        n = 0
        while len(started) < total:
            n += 1
            taken = await d.take([queue], per_pop, 60_000, f"t{n}")
            started.extend(taken.leases)
            await d.release(taken.leases)
            if not taken.leases:
                await asyncio.sleep(max(taken.wait_ms, 5) / 1000 if taken.wait_ms > 0 else 0.02)

    await asyncio.wait_for(loop(), timeout_s)
    return started
