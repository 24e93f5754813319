"""Stopping running work: cancel of a running job (`cancelRunningMs`) and a SIGKILLed worker's jobs
starting again elsewhere (`crashRecoveryS`). Both run the worker's built-in `sleep` type."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from bench import scenarios
from bench.scheduled import Unavailable

CANCEL_QUEUE = "bench-cancel"
CRASH_QUEUE = "bench-crash"
LONG_SLEEP_MS = 600_000  # far longer than any scenario: the bench cancels these jobs itself


async def _long_jobs(client: aiohttp.ClientSession, queue: str, count: int) -> tuple[str, list[str]]:
    """Submit `count` long sleep jobs under a fresh tag and wait until every one is running."""
    tag = f"bench-{queue}-{uuid.uuid4().hex[:8]}"
    job = {"queue": queue, "jobType": "sleep", "payload": {"ms": LONG_SLEEP_MS}, "tags": [tag], "maxAttempts": 5}
    status, body = await scenarios.call(client, "POST", "/api/v1/job-batches", {"jobs": [job] * count})
    if status != 201:
        raise scenarios.Rejected("POST /job-batches", status, body)
    ids = [str(i) for i in body["jobIds"]]
    deadline = time.perf_counter() + 60
    while True:
        running = [j for j in await scenarios.jobs_tagged(client, tag) if j["status"] == "running"]
        if len(running) >= count:
            return tag, ids
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {len(running)} of {count} sleep jobs running after 60 s")
        await asyncio.sleep(0.2)


async def _cancel_all(client: aiohttp.ClientSession, ids: list[str]) -> None:
    """Best effort: cancel what is left, so the cluster's stop does not wait for the sleeps to drain."""
    for job_id in ids:
        await scenarios.call(client, "DELETE", f"/api/v1/jobs/{job_id}")


async def cancel_running(api_url: str, key: str, jobs: int = 20, spacing_s: float = 0.137) -> dict[str, Any]:
    """`jobs` running sleep jobs, each cancelled with DELETE /jobs/{id}, one every `spacing_s` (so the samples
    fall at every phase of the worker's cancel check). The figure: DELETE sent -> the `cancelled` event
    (the worker's time on the cancelled attempt's `endedAt`); `untilStatusMs`: until GET shows `cancelled`."""
    async with scenarios.http_client(api_url, key) as client:
        tag, ids = await _long_jobs(client, CANCEL_QUEUE, jobs)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        watcher = asyncio.create_task(_watch_cancelled(client, tag, seen, len(ids), time.time() + 60))
        try:
            for job_id in ids:
                sent[job_id] = time.time()
                status, body = await scenarios.call(client, "DELETE", f"/api/v1/jobs/{job_id}")
                if status not in (200, 202):
                    raise scenarios.Rejected(f"DELETE /jobs/{job_id}", status, body)
                await asyncio.sleep(spacing_s)
            await watcher
            ended = {job_id: await _cancelled_at(client, job_id) for job_id in seen}
        finally:
            watcher.cancel()
            await _cancel_all(client, [i for i in ids if i not in seen])
    event_ms = [(at - sent[i]) * 1000 for i, at in ended.items() if at is not None]
    return {**scenarios.percentiles(event_ms), "jobs": jobs, "cancelled": len(seen),
            "untilStatusMs": scenarios.percentiles([(at - sent[i]) * 1000 for i, at in seen.items()])}


async def _watch_cancelled(
    client: aiohttp.ClientSession, tag: str, seen: dict[str, float], count: int, deadline: float
) -> None:
    """Note in `seen` when each job under `tag` first shows `cancelled` (polled every 100 ms), until all
    `count` do or `deadline` (Unix time) passes."""
    while len(seen) < count and time.time() < deadline:
        for job in await scenarios.jobs_tagged(client, tag):
            if job["status"] == "cancelled":
                seen.setdefault(str(job["jobId"]), time.time())
        await asyncio.sleep(0.1)


async def _cancelled_at(client: aiohttp.ClientSession, job_id: str) -> float | None:
    """When the worker stopped the job: the `endedAt` of its last attempt (the `cancelled` event's time)."""
    job = await scenarios.get_json(client, f"/api/v1/jobs/{job_id}")
    history = job.get("attemptHistory") or []
    return scenarios.timestamp(history[-1].get("endedAt")) if history else None


async def crash_recovery(
    api_url: str, key: str, kill_worker: Callable[[], int] | None, lease_ms: int, jobs: int = 10
) -> dict[str, Any]:
    """`jobs` running sleep jobs; SIGKILL the worker process (`kill_worker` sends it and returns the pid);
    `seconds`: kill -> the last of them starting again (a new attempt's startedAt), the run's supervisor
    having restarted the worker. Target: lease TTL + 2 s."""
    if kill_worker is None:
        raise Unavailable("needs a cluster the bench started (it kills the worker process)")
    async with scenarios.http_client(api_url, key) as client:
        _, ids = await _long_jobs(client, CRASH_QUEUE, jobs)
        try:
            pid = kill_worker()
            killed_at = time.time()
            restarted = await _restarts(client, ids, killed_at, deadline=killed_at + lease_ms / 1000 + 30)
        finally:
            await _cancel_all(client, ids)
    after = sorted(t - killed_at for t in restarted.values())
    return {"seconds": round(after[-1], 2) if len(after) == jobs else None, "p50": scenarios.percentiles(after)["p50"],
            "first": round(after[0], 2) if after else None, "jobs": jobs, "restarted": len(after),
            "leaseTtlS": lease_ms / 1000, "targetS": lease_ms / 1000 + 2, "killedPid": pid}


async def _restarts(client: aiohttp.ClientSession, ids: list[str], killed_at: float, deadline: float
                    ) -> dict[str, float]:
    """For each job, the start of its first attempt begun after `killed_at` (Unix time)."""
    found: dict[str, float] = {}
    while len(found) < len(ids) and time.time() < deadline:
        for job_id in ids:
            if job_id in found:
                continue
            job = await scenarios.get_json(client, f"/api/v1/jobs/{job_id}")
            starts = [t for a in job.get("attemptHistory") or []
                      if (t := scenarios.timestamp(a.get("startedAt"))) is not None and t > killed_at]
            if starts:
                found[job_id] = min(starts)
        await asyncio.sleep(0.25)
    return found
