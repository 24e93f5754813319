"""The load scenarios of `make bench`: each returns plain figures for the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import websockets

NOOP = {"queue": "bench", "jobType": "noop", "payload": {}}
JSON = {"Content-Type": "application/json"}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of a sample, rounded to 0.1."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    # quantiles() needs two points (before Python 3.13); one point is every percentile of itself.
    qs = statistics.quantiles(values * 2 if len(values) == 1 else values, n=100, method="inclusive")
    return {"p50": round(qs[49], 1), "p95": round(qs[94], 1), "p99": round(qs[98], 1),
            "max": round(max(values), 1), "n": len(values)}


def http_client(api_url: str, key: str) -> aiohttp.ClientSession:
    """A session against the api, sending the key."""
    # aiohttp, not httpx: the load generator shares the 2 cores with the cluster, and httpx costs
    # ~2 ms of CPU per request against aiohttp's ~0.3 ms.
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return aiohttp.ClientSession(
        api_url, headers=headers, timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=64),
    )


async def post_json(client: aiohttp.ClientSession, path: str, body: bytes) -> tuple[int, Any]:
    """POST a JSON body; (status, decoded body)."""
    async with client.post(path, data=body, headers=JSON) as r:
        return r.status, orjson.loads(await r.read())


async def call(client: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Any request; (status, decoded body, or its text when it is not JSON, or None when empty)."""
    data = None if body is None else orjson.dumps(body)
    async with client.request(method, path, data=data, headers=JSON) as r:
        raw = await r.read()
        try:
            return r.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return r.status, raw.decode(errors="replace")


async def get_json(client: aiohttp.ClientSession, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET `path` and decode it; a non-2xx raises."""
    async with client.get(path, params=params) as r:
        r.raise_for_status()
        return orjson.loads(await r.read())


async def single_submissions(api_url: str, key: str, seconds: float, concurrency: int = 32) -> dict[str, Any]:
    """POST /jobs as fast as `concurrency` clients can for `seconds`."""
    async with http_client(api_url, key) as client:
        ok = 0
        errors = 0
        deadline = time.perf_counter() + seconds
        body = orjson.dumps(NOOP)

        async def loop() -> None:
            nonlocal ok, errors
            while time.perf_counter() < deadline:
                status, _ = await post_json(client, "/api/v1/jobs", body)
                if status == 201:
                    ok += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"submitted": ok, "errors": errors, "seconds": round(elapsed, 2), "perSecond": round(ok / elapsed)}


class Rejected(RuntimeError):
    """The API refused a request the bench needs (status and problem body kept for the report)."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        super().__init__(f"{what} answered {status}: {detail}")
        self.status = status
        self.body = body


def noop_jobs(n: int, index: int) -> list[dict[str, Any]]:
    """The jobs of one plain batch: `n` no-op jobs."""
    return [NOOP] * n


JobsFor = Callable[[int, int], list[dict[str, Any]]]


async def submit_batches(
    client: aiohttp.ClientSession, total: int, batch: int, concurrency: int, jobs_for: JobsFor = noop_jobs
) -> list[str]:
    """POST /job-batches until `total` jobs are accepted; `jobs_for(size, batch index)` builds each batch."""
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(n: int, index: int) -> None:
        async with sem:
            status, body = await post_json(client, "/api/v1/job-batches", orjson.dumps({"jobs": jobs_for(n, index)}))
            if status != 201:
                raise Rejected("POST /job-batches", status, body)
            ids.append(body["batchId"])

    sizes = [batch] * (total // batch) + ([total % batch] if total % batch else [])
    await asyncio.gather(*(one(n, i) for i, n in enumerate(sizes)))
    return ids


async def batched_submissions(api_url: str, key: str, total: int, batch: int = 500) -> dict[str, Any]:
    """POST /job-batches of `batch` no-op jobs until `total` are accepted; then waits for them to
    finish (untimed), so the next scenario does not start behind a backlog."""
    async with http_client(api_url, key) as client:
        start = time.perf_counter()
        batch_ids = await submit_batches(client, total, batch, concurrency=4)
        elapsed = time.perf_counter() - start
        await wait_batches(client, batch_ids, time.perf_counter() + 300)
    return {"submitted": total, "batchSize": batch, "seconds": round(elapsed, 2),
            "perSecond": round(total / elapsed)}


async def end_to_end(
    api_url: str, key: str, total: int, batch: int = 500, timeout_s: float = 300, jobs_for: JobsFor = noop_jobs
) -> dict[str, Any]:
    """Submit `total` jobs in batches (no-op jobs unless `jobs_for` says otherwise); time from the first
    submit until all are completed."""
    async with http_client(api_url, key) as client:
        start = time.perf_counter()
        batch_ids = await submit_batches(client, total, batch, concurrency=2, jobs_for=jobs_for)
        submitted_at = time.perf_counter()
        done = await wait_batches(client, batch_ids, start + timeout_s)
        elapsed = time.perf_counter() - start
    return {"jobs": total, "completed": done, "submitSeconds": round(submitted_at - start, 2),
            "seconds": round(elapsed, 2), "jobsPerSecond": round(done / elapsed)}


async def wait_batches(client: aiohttp.ClientSession, batch_ids: list[str], deadline: float) -> int:
    """Until every batch has finished or `deadline` (perf_counter) passed; returns jobs completed."""
    # Jobs run in submission order, so only the oldest unfinished batch is polled: each poll
    # counts a batch's rows in Postgres, and polling them all would load the server measured.
    waiting = list(batch_ids)
    finished = dict.fromkeys(batch_ids, 0)
    while waiting and time.perf_counter() < deadline:
        counts = (await get_json(client, f"/api/v1/job-batches/{waiting[0]}"))["counts"]
        finished[waiting[0]] = counts["completed"]
        if counts["completed"] + counts["failed"] + counts["cancelled"] >= counts["total"]:
            waiting.pop(0)
        else:
            await asyncio.sleep(0.1)
    return sum(finished.values())


def timestamp(value: str | None) -> float | None:
    """An API time (ISO 8601) as Unix seconds; None stays None."""
    return datetime.fromisoformat(value).timestamp() if value else None


async def fixed_rate_latency(
    api_url: str, notifier_url: str, key: str, rate: int, seconds: float
) -> dict[str, Any]:
    """Submit single jobs at `rate`/s; latency submit→started and submit→completed (worker times),
    and WebSocket delivery latency of job_completed (receive time - event time)."""
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    body = {**NOOP, "tags": [tag]}
    sent: dict[str, float] = {}
    ws_lat: list[float] = []
    all_seen = asyncio.Event()
    submitting = True
    ws_url = notifier_url.replace("http", "ws", 1) + "/ws" + (f"?token={key}" if key else "")

    async with websockets.connect(ws_url, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "queue": "bench"}))

        async def listen() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "job_completed" and msg.get("jobId") in sent:
                    ws_lat.append((time.time() - timestamp(msg["occurredAt"])) * 1000)  # type: ignore[operator]
                    if not submitting and len(ws_lat) >= len(sent):
                        all_seen.set()

        listener = asyncio.create_task(listen())
        async with http_client(api_url, key) as client:
            interval = 1.0 / rate
            payload = orjson.dumps(body)
            start = time.perf_counter()
            tasks = []

            async def submit() -> None:
                t0 = time.time()
                status, created = await post_json(client, "/api/v1/jobs", payload)
                if status == 201:
                    sent[created["jobId"]] = t0

            for i in range(int(rate * seconds)):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(submit()))
            await asyncio.gather(*tasks)
            # Let the tail complete (past the knee the backlog drains first).
            submitting = False
            if len(ws_lat) >= len(sent):
                all_seen.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), 120)
            # The rows catch up with the events a moment later (projection is batched).
            deadline = time.perf_counter() + 30
            while True:
                jobs = await jobs_tagged(client, tag)
                if sum(1 for j in jobs if j.get("completedAt")) >= len(sent) or time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.25)
        listener.cancel()
    started: list[float] = []
    completed: list[float] = []
    for job in jobs:
        t0 = sent.get(job["jobId"])
        s, c = timestamp(job.get("startedAt")), timestamp(job.get("completedAt"))
        if t0 is not None and s is not None:
            started.append((s - t0) * 1000)
        if t0 is not None and c is not None:
            completed.append((c - t0) * 1000)
    return {"rate": rate, "seconds": seconds, "submitted": len(sent),
            "submitToStartedMs": percentiles(started), "submitToCompletedMs": percentiles(completed),
            "websocketDeliveryMs": percentiles(ws_lat)}


async def jobs_tagged(client: aiohttp.ClientSession, tag: str) -> list[dict[str, Any]]:
    """Every job carrying `tag` (GET /jobs, all pages)."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"tag": tag, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = await get_json(client, "/api/v1/jobs", params)
        jobs.extend(page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return jobs
