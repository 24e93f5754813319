"""`analyticsLagS.workerPeak`: the analytics lag while the workers run a backlog at their peak pace.

The issue's target reads "analytics keeps up with the worker's peak event rate": here the jobs are
submitted into a paused queue first (their `submitted` and `dispatched` events recorded before the
clock starts), then the queue is resumed, so the events analytics must keep up with are the
workers' own (`started`, `completed`) at the rate the workers can go. The stricter figure beside
it, taken during `endToEnd`, adds the api's submission burst on top.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench import cluster
from bench.metrics_routes import LagSampler, analytics_metrics_url, read_gauge
from bench.scenarios import NOOP, Rejected, call, http_client, submit_batches, wait_batches

QUEUE = "bench-peak"
CAUGHT_UP_TIMEOUT_S = 120.0


async def _caught_up(timeout_s: float = CAUGHT_UP_TIMEOUT_S) -> None:
    """Until the analytics gauge reads 0 (a fetch found nothing new with no batch in hand)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            async with session.get(analytics_metrics_url()) as r:
                if read_gauge(await r.text()) == 0:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"analytics did not catch up within {timeout_s:.0f} s")


async def worker_peak(c: cluster.Cluster, total: int) -> dict[str, Any]:
    """`{p99, max, n, jobs, seconds, eventsPerSecond}`: lag samples from the resume until all completed."""
    async with http_client(c.api_url, c.api_key) as client:
        status, body = await call(client, "POST", f"/api/v1/queues/{QUEUE}/pause")
        if status >= 300:
            raise Rejected(f"POST /queues/{QUEUE}/pause", status, body)
        batch_ids = await submit_batches(client, total, 500, concurrency=2,
                                         jobs_for=lambda n, _: [{**NOOP, "queue": QUEUE}] * n)
        await _caught_up()
        sampler = LagSampler()
        async with sampler.sampling():
            began = time.perf_counter()
            status, body = await call(client, "POST", f"/api/v1/queues/{QUEUE}/resume")
            if status >= 300:
                raise Rejected(f"POST /queues/{QUEUE}/resume", status, body)
            done = await wait_batches(client, batch_ids, began + 300)
            seconds = time.perf_counter() - began
            await _caught_up()
    figures = sampler.figures()
    # Each job adds two worker events (started, completed) at the workers' pace.
    figures.update(jobs=done, seconds=round(seconds, 2), eventsPerSecond=round(2 * done / seconds))
    return figures
