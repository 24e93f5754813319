"""The service shell: health routes, metrics, lifecycle, and `python -m services.scheduler`."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from deploy.local.servers import free_port
from services.scheduler.service import SchedulerService
from shared.settings import SchedulerSettings
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import ROOT, process_env
from tests.integration.scheduler.conftest import Harness


async def test_health_routes_and_metrics(harness: Harness) -> None:
    service = await harness.start()
    job = await harness.insert()
    await harness.submit(job)
    await harness.wait_status(job, "queued")
    base = f"http://127.0.0.1:{service.settings.scheduler_port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        metrics = (await client.get("/metrics")).text
    assert 'conveyor_scheduler_dispatched_total{source="consumer"}' in metrics
    assert "conveyor_scheduler_projection_batch_size_bucket" in metrics


async def test_stop_is_safe_before_start_and_twice() -> None:
    service = SchedulerService(SchedulerSettings(scheduler_port=free_port()))
    await service.stop()
    await service.stop()
    assert not service.failed.is_set()


async def test_start_fails_loudly_when_postgres_is_unreachable(harness: Harness) -> None:
    settings = harness.settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    service = SchedulerService(settings)
    began = time.monotonic()
    try:
        # The refusal itself, quickly: a start that hangs fails this test (TimeoutError is no OSError).
        with pytest.raises(OSError) as refused:
            await asyncio.wait_for(service.start(), timeout=20)
        assert not isinstance(refused.value, TimeoutError), "start() hung instead of failing"
        assert time.monotonic() - began < 15
    finally:
        await service.stop()
    assert not service.failed.is_set()


async def test_start_fails_loudly_when_redis_is_unreachable(harness: Harness) -> None:
    settings = harness.settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=2.0)
    service = SchedulerService(settings)
    try:
        with pytest.raises((OSError, RedisConnectionError)) as refused:
            await asyncio.wait_for(service.start(), timeout=20)
        assert not isinstance(refused.value, TimeoutError), "start() hung instead of failing"
    finally:
        await service.stop()


async def test_the_module_runs_dispatches_and_stops_on_sigterm(harness: Harness, tmp_path: Path) -> None:
    settings = harness.settings()
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.scheduler", env=process_env(settings), cwd=str(ROOT), stdout=out,
            stderr=out,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.scheduler_port}", timeout=2) as client:

            async def ready() -> int:
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await poll_until(ready, lambda code: code == 200, timeout_s=30, every_s=0.1)
        job = await harness.insert()
        await harness.submit(job)
        await harness.wait_status(job, "queued", timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
