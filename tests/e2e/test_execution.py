"""Execution semantics on a whole cluster (issue 9): a worker stopped past its lease cannot complete
its job; cancel reaches a running handler within a second; a retry resumes from the checkpoint; retry
defaults by job type and by queue; logs, checkpoint and late results are visible on GET /jobs/{id}."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.servers import free_port
from shared.dispatch.config import DispatchConfig
from shared.dispatch.protocol import Dispatcher, JobRef
from shared.models import RetryPolicy
from shared.settings import WorkerSettings
from tests.e2e.support import api, new_queue, submit, wait_for, wait_for_events
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import SettingsFactory
from tests.integration.worker.support import spawn_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cluster(env={"WORKER_HANDLER_MODULES": "tests.integration.worker.custom_handlers"}),
]

LEASE_S, SWEEP_S = 3.0, 1.0  # the cluster's LEASE_MS and the scheduler's lease_check_interval_s
MARGIN_S = 3.0  # a loaded machine


async def _job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def test_a_worker_stopped_past_its_lease_cannot_complete_the_job(
    cluster: Cluster, service_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="sleep", payload={"ms": 4000})
        await wait_for(client, job_id, {"running"})
        first_pid = cluster.supervisor.pid("worker")
        assert first_pid is not None
        await cluster.supervisor.kill("worker", signal.SIGSTOP)
        stopped_at = time.time()
        second = service_settings(
            WorkerSettings, worker_id="second-worker", worker_port=free_port(), lease_ms=int(LEASE_S * 1000),
            worker_handler_modules="tests.integration.worker.custom_handlers",
        )
        log = tmp_path / "second-worker.log"
        proc = await spawn_worker(second, log)
        try:
            done = await wait_for(client, job_id, timeout_s=60)
            assert done["status"] == "completed", done
            first, retried = done["attemptHistory"]
            assert first["error"]["type"] == "lease_expired" and first["status"] == "failed"
            assert retried["workerId"] == "second-worker" and retried["status"] == "completed"
            # Requeued within lease TTL + sweep interval of the stop (its last heartbeat was before it).
            requeued_after = datetime.fromisoformat(retried["startedAt"]).timestamp() - stopped_at
            assert requeued_after < LEASE_S + SWEEP_S + MARGIN_S, requeued_after
            await cluster.supervisor.kill("worker", signal.SIGCONT)

            async def rejected() -> dict[str, Any]:
                return await _job(client, job_id)

            job = await poll_until(
                rejected, lambda j: j["attemptHistory"][0].get("lateResult") is not None, timeout_s=30, every_s=0.2,
            )
        finally:
            if cluster.supervisor.pid("worker") == first_pid:
                await cluster.supervisor.kill("worker", signal.SIGCONT)
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)
        await asyncio.sleep(1.0)  # the behaviour under test: nothing more changes the job
        job = await _job(client, job_id)
        trail = await wait_for_events(client, job_id, 1)
    late = job["attemptHistory"][0]["lateResult"]
    assert late["rejected"] is True and late["outcome"] in {"completed", "abandoned"}
    assert late["workerId"] == f"{socket.gethostname()}-{first_pid}"
    assert job["status"] == "completed" and job["attempts"] == 2 and job["result"] == {"sleptMs": 4000}
    assert [e["type"] for e in trail].count("completed") == 1, trail  # completed once


async def test_cancel_reaches_a_running_handler_within_a_second(
    cluster: Cluster, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    latencies = []
    async with api(cluster) as client:
        for n in range(3):
            seen = tmp_path / f"cancelled-{n}"
            job_id = await submit(client, jobType="custom.cancel-probe", payload={"path": str(seen)})
            await wait_for(client, job_id, {"running"})
            await asyncio.sleep(0.5)  # the handler is in its wait
            asked = time.time()
            r = await client.delete(f"/jobs/{job_id}")
            assert r.status_code == 202, r.text

            async def noticed(path: Path = seen) -> bool:
                return path.exists()  # noqa: ASYNC240 (a tiny local file)

            await poll_until(noticed, timeout_s=5, every_s=0.02)
            latencies.append(float(seen.read_text()) - asked)
            job = await wait_for(client, job_id, timeout_s=20)
            assert job["status"] == "cancelled" and job["cancelReason"] == "cancelled_by_user"
            ref = JobRef("e2e", uuid.UUID(job_id))  # lease released: the slot goes with it
            await poll_until(lambda ref=ref: dispatcher.held([ref]), lambda held: held == set(), timeout_s=5)
    print(f"DELETE -> handler saw the cancel: {[round(x * 1000) for x in latencies]} ms")
    assert all(0 <= x < 1.0 for x in latencies), latencies


async def test_a_retried_job_resumes_from_its_checkpoint_and_shows_logs_and_progress(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="custom.resumable", payload={"total": 10, "failAt": 6}, maxAttempts=2)
        job = await wait_for(client, job_id, timeout_s=30)
    assert job["status"] == "completed", job
    assert job["result"] == {"resumedAt": 6, "attempt": 2}  # steps 1-6 did not run again
    assert job["checkpoint"] == {"done": 10}
    assert [a["status"] for a in job["attemptHistory"]] == ["failed", "completed"]
    messages = [(line["attempt"], line["message"]) for line in job["logs"]]
    assert (1, "attempt 1 starts at step 0") in messages and (2, "attempt 2 starts at step 6") in messages
    assert (2, "all steps done") in messages
    assert all(set(line) == {"at", "attempt", "message"} for line in job["logs"])


async def test_a_running_job_shows_progress_with_stage_and_message(cluster: Cluster) -> None:
    async with api(cluster) as client:
        job_id = await submit(client, jobType="sleep", payload={"ms": 3000})

        async def progressing() -> dict[str, Any]:
            return await _job(client, job_id)

        job = await poll_until(progressing, lambda j: j["progress"] is not None, timeout_s=20, every_s=0.1)
        await wait_for(client, job_id, timeout_s=20)
    progress = job["progress"]
    assert progress["stage"] == "sleeping" and progress["total"] == 3000 and 0 < progress["percent"] < 100
    assert progress["message"].startswith("slept ")


async def test_retry_defaults_by_job_type_and_by_queue(cluster: Cluster, dispatcher: Dispatcher) -> None:
    queue = new_queue()
    await dispatcher.configure(queue, DispatchConfig(
        retry_json=RetryPolicy(strategy="fixed", base_delay_ms=700, jitter=False).model_dump_json(by_alias=True),
    ))
    async with api(cluster) as client:
        by_type = await submit(client, queue=queue, jobType="custom.flaky", maxAttempts=2)
        by_queue = await submit(client, queue=queue, jobType="fail", payload={"mode": "transient"}, maxAttempts=2)
        own = await submit(client, queue=queue, jobType="fail", payload={"mode": "transient"}, maxAttempts=2,
                           retry={"strategy": "fixed", "baseDelayMs": 50, "jitter": False})
        delays = {}
        for name, job_id in (("type", by_type), ("queue", by_queue), ("own", own)):
            job = await wait_for(client, job_id, timeout_s=30)
            assert job["status"] == "failed" and job["attempts"] == 2, job
            trail = await wait_for_events(client, job_id, 5)
            [retry] = [e for e in trail if e["type"] == "retry"]
            delays[name] = retry["data"]["delayMs"]
    assert delays == {"type": 1234, "queue": 700, "own": 50}
