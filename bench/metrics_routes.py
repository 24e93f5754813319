"""Issue-10 figures: `metricsRoutes` (the analytics routes over a seeded history of jobs) and
`analyticsLagS` (the analytics service's lag while the end-to-end scenario runs)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bench import cluster
from bench.scenarios import http_client, percentiles
from bench.seed_history import seed

HISTORY_JOBS = 1_000_000
CALLS = 50
# Each route as the dashboard would call it, over the 24 h window (the heaviest the routes read by minute).
ROUTES: dict[str, tuple[str, dict[str, str]]] = {
    "stats": ("/api/v1/stats", {"window": "24h"}),
    "queues": ("/api/v1/metrics/queues", {"window": "24h"}),
    "queues7d": ("/api/v1/metrics/queues", {"window": "7d"}),
    "jobTypes": ("/api/v1/metrics/job-types", {"window": "24h"}),
    "durationHistogram": ("/api/v1/metrics/job-duration-histogram", {"window": "24h"}),
    "timeline": ("/api/v1/metrics/jobs/timeline", {"window": "24h", "step": "15m"}),
    "timeline1m": ("/api/v1/metrics/jobs/timeline", {"window": "24h", "step": "1m"}),
    "workers": ("/api/v1/metrics/workers", {"window": "24h"}),
}
LAG_GAUGE = "conveyor_analytics_lag_seconds"
SAMPLE_EVERY_S = 0.5


def database_url(home: Path, c: cluster.Cluster) -> str:
    """The cluster's Postgres: DATABASE_URL, else the env file its runner wrote."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    env_file = (home if c.process is not None else Path(os.environ.get("CONVEYOR_HOME") or cluster.ROOT / ".conveyor"))
    values = cluster.read_env(env_file / "env")
    if not values.get("DATABASE_URL"):
        raise RuntimeError(f"no DATABASE_URL in {env_file / 'env'}")
    return values["DATABASE_URL"]


async def metrics_routes(c: cluster.Cluster, home: Path, quick: bool) -> dict[str, Any]:
    """Seed the history, then call each route CALLS times in a row; its p95 (ms)."""
    jobs = HISTORY_JOBS // 10 if quick else HISTORY_JOBS
    print(f"seeding {jobs:,} jobs of history ...", flush=True)
    seeded = await seed(database_url(home, c), jobs)
    print(f"  {seeded}", flush=True)
    out: dict[str, Any] = {"historyJobs": jobs, "seedSeconds": seeded["seconds"]}
    async with http_client(c.api_url, c.api_key) as client:
        for name, (path, params) in ROUTES.items():
            await _call(client, path, params)  # warm: prepared statements, caches
            took = [await _call(client, path, params) for _ in range(CALLS)]
            out[name] = {"p95Ms": percentiles(took)["p95"], "p50Ms": percentiles(took)["p50"]}
            print(f"  {name}: {out[name]}", flush=True)
    return out


async def _call(client: aiohttp.ClientSession, path: str, params: dict[str, str]) -> float:
    began = time.perf_counter()
    async with client.get(path, params=params) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {path} {params} answered {r.status}")
    return (time.perf_counter() - began) * 1000


def analytics_metrics_url() -> str:
    """The analytics service's /metrics (ANALYTICS_PORT, default 8030)."""
    return f"http://127.0.0.1:{os.environ.get('ANALYTICS_PORT', '8030')}/metrics"


def read_gauge(text: str, name: str = LAG_GAUGE) -> float | None:
    """The largest value of a gauge over its label sets in Prometheus text, None when absent."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)]
    return max(values) if values else None


class LagSampler:
    """Samples the analytics lag gauge every SAMPLE_EVERY_S while a scenario runs."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or analytics_metrics_url()
        self.samples: list[float] = []
        self.taken_at: list[float] = []  # time.monotonic() of each sample
        self.errors = 0

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                try:
                    async with session.get(self.url) as r:
                        value = read_gauge(await r.text())
                    if value is not None:
                        self.samples.append(value)
                        self.taken_at.append(time.monotonic())
                except (aiohttp.ClientError, TimeoutError):
                    self.errors += 1
                await asyncio.sleep(SAMPLE_EVERY_S)

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[LagSampler]:
        """Sample for the duration of the block."""
        task = asyncio.create_task(self._run(), name="analytics-lag-sampler")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def figures(self, split_at: float | None = None) -> dict[str, Any]:
        """`{p99, max, n}` in seconds, or why there is none (the gauge missing from this build).

        With `split_at` (a time.monotonic() moment), also `after`: the same over the samples taken from then on
        (the end-to-end scenario splits at the end of its submission burst: what follows is the workers' pace).
        """
        if not self.samples:
            return {"available": False, "reason": f"no {LAG_GAUGE} at {self.url} ({self.errors} failed reads)"}
        p = percentiles(self.samples)
        out: dict[str, Any] = {"p99": round(p["p99"], 2), "max": round(p["max"], 2), "n": len(self.samples)}
        if split_at is not None:
            later = [v for v, at in zip(self.samples, self.taken_at, strict=True) if at >= split_at]
            if later:
                q = percentiles(later)
                out["afterSubmitBurst"] = {"p99": round(q["p99"], 2), "max": round(q["max"], 2), "n": len(later)}
        return out
