"""The load scenarios of `make bench`: each returns plain figures for the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import websockets

NOOP = {"queue": "bench", "jobType": "noop", "payload": {}}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of a sample, rounded to 0.1."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(qs[49], 1), "p95": round(qs[94], 1), "p99": round(qs[98], 1),
            "max": round(max(values), 1), "n": len(values)}


def _client(api_url: str, key: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30,
                             limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))


async def single_submissions(api_url: str, key: str, seconds: float, concurrency: int = 32) -> dict[str, Any]:
    """POST /jobs as fast as `concurrency` clients can for `seconds`."""
    async with _client(api_url, key) as client:
        ok = 0
        errors = 0
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal ok, errors
            while time.perf_counter() < deadline:
                r = await client.post("/api/v1/jobs", json=NOOP)
                if r.status_code == 201:
                    ok += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"submitted": ok, "errors": errors, "seconds": round(elapsed, 2), "perSecond": round(ok / elapsed)}


async def _submit_batches(client: httpx.AsyncClient, total: int, batch: int, concurrency: int) -> list[str]:
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with sem:
            r = await client.post("/api/v1/job-batches", json={"jobs": [NOOP] * n})
            r.raise_for_status()
            ids.append(r.json()["batchId"])

    sizes = [batch] * (total // batch) + ([total % batch] if total % batch else [])
    await asyncio.gather(*(one(n) for n in sizes))
    return ids


async def batched_submissions(api_url: str, key: str, total: int, batch: int = 500) -> dict[str, Any]:
    """POST /job-batches of `batch` no-op jobs until `total` are accepted."""
    async with _client(api_url, key) as client:
        start = time.perf_counter()
        await _submit_batches(client, total, batch, concurrency=4)
        elapsed = time.perf_counter() - start
    return {"submitted": total, "batchSize": batch, "seconds": round(elapsed, 2),
            "perSecond": round(total / elapsed)}


async def end_to_end(api_url: str, key: str, total: int, batch: int = 500, timeout_s: float = 300) -> dict[str, Any]:
    """Submit `total` no-op jobs in batches; time from the first submit until all are completed."""
    async with _client(api_url, key) as client:
        start = time.perf_counter()
        batch_ids = await _submit_batches(client, total, batch, concurrency=2)
        submitted_at = time.perf_counter()
        done = 0
        while time.perf_counter() - start < timeout_s:
            counts = await asyncio.gather(*(client.get(f"/api/v1/job-batches/{b}") for b in batch_ids))
            done = sum(r.json()["counts"]["completed"] for r in counts)
            failed = sum(r.json()["counts"]["failed"] for r in counts)
            if done + failed >= total:
                break
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - start
    return {"jobs": total, "completed": done, "submitSeconds": round(submitted_at - start, 2),
            "seconds": round(elapsed, 2), "jobsPerSecond": round(done / elapsed)}


def _ts(value: str | None) -> float | None:
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
                    ws_lat.append((time.time() - _ts(msg["occurredAt"])) * 1000)  # type: ignore[operator]
                    if not submitting and len(ws_lat) >= len(sent):
                        all_seen.set()

        listener = asyncio.create_task(listen())
        async with _client(api_url, key) as client:
            interval = 1.0 / rate
            start = time.perf_counter()
            tasks = []

            async def submit() -> None:
                t0 = time.time()
                r = await client.post("/api/v1/jobs", json=body)
                if r.status_code == 201:
                    sent[r.json()["jobId"]] = t0

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
            started: list[float] = []
            completed: list[float] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"tag": tag, "limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = (await client.get("/api/v1/jobs", params=params)).json()
                for job in page["items"]:
                    t0 = sent.get(job["jobId"])
                    s, c = _ts(job.get("startedAt")), _ts(job.get("completedAt"))
                    if t0 is not None and s is not None:
                        started.append((s - t0) * 1000)
                    if t0 is not None and c is not None:
                        completed.append((c - t0) * 1000)
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        listener.cancel()
    return {"rate": rate, "seconds": seconds, "submitted": len(sent),
            "submitToStartedMs": percentiles(started), "submitToCompletedMs": percentiles(completed),
            "websocketDeliveryMs": percentiles(ws_lat)}
