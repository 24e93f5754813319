"""GET /api/v1/workers: the registry the workers keep in Redis, as the api reads it."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from deploy.local.servers import free_port
from services.api.http.app import create_app
from services.api.http.deps import ApiDeps
from services.worker.executor import Executor
from services.worker.heartbeat import Heartbeat
from services.worker.service import WorkerService
from shared.auth.keys import create_api_key
from shared.auth.principal import DEFAULT_TENANT, Scope
from shared.dispatch.keys import GONE_LISTED_MS
from shared.dispatch.protocol import Dispatcher, connect, now_ms
from shared.models import JobSpec
from shared.settings import WorkerSettings
from tests.fixtures.polling import poll_until
from tests.fixtures.resources import SettingsFactory
from tests.integration.api.conftest import Api, bearer

FIELDS = {"workerId", "host", "pid", "queues", "concurrency", "running", "status", "startedAt", "lastHeartbeatAt"}


async def listed(api: Api) -> dict[str, dict[str, Any]]:
    """GET /workers by worker id (asserting the answer's shape)."""
    response = await api.client.get("/api/v1/workers")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["workerId"] for i in items] == sorted(i["workerId"] for i in items)
    for item in items:
        assert set(item) == FIELDS
    return {i["workerId"]: i for i in items}


def worker_settings(service_settings: SettingsFactory, **overrides: Any) -> WorkerSettings:
    values = {"lease_ms": 3000, "worker_id": f"w-{uuid.uuid4().hex[:6]}", **overrides}
    return service_settings(WorkerSettings, **values)


async def register_like_a_worker(dispatcher: Dispatcher, worker_id: str, lease_ms: int, **entry: Any) -> None:
    """One heartbeat's registry write, through the worker's own code, then no more (a worker that froze)."""
    doc = {
        "workerId": worker_id, "queues": ["q"], "allQueues": False, "concurrency": 2,
        "startedAt": datetime.now(UTC).isoformat(), "inFlight": 0, "jobIds": [], "jobTypes": ["noop"],
        "status": "running", "hostname": "box-1", "pid": 4242, **entry,
    }
    heartbeat = Heartbeat(
        dispatcher, cast(Executor, None), worker_id=worker_id, lease_ms=lease_ms, describe=lambda: doc,
    )  # register() never touches the executor
    await heartbeat.register()


async def test_a_running_worker_is_listed_with_its_jobs(
    api: Api, service_settings: SettingsFactory, kafka_topics: dict[str, str]
) -> None:
    settings = worker_settings(service_settings, worker_queues="a,b", worker_concurrency=7)
    service = WorkerService(settings)
    await service.start()
    try:
        item = (await poll_until(lambda: listed(api), lambda ws: settings.worker_id in ws))[settings.worker_id]
        assert item["host"] == socket.gethostname() and item["pid"] == os.getpid()
        assert item["queues"] == ["a", "b"] and item["concurrency"] == 7
        assert item["running"] == [] and item["status"] == "active"
        started = datetime.fromisoformat(item["startedAt"])
        beat = datetime.fromisoformat(item["lastHeartbeatAt"])
        assert started <= beat <= datetime.now(UTC)

        spec = JobSpec(job_id=uuid.uuid4(), queue="a", job_type="sleep", payload={"ms": 2500})
        await api.dispatcher.push([(spec, 0)])
        # The entry is rewritten every lease/3 (1 s here).
        running = await poll_until(lambda: listed(api), lambda ws: ws[settings.worker_id]["running"], timeout_s=5)
        assert running[settings.worker_id]["running"] == [str(spec.job_id)]
        assert datetime.fromisoformat(running[settings.worker_id]["lastHeartbeatAt"]) >= beat
    finally:
        await service.stop()
    # A clean stop removes the entry: the worker leaves the list rather than showing gone.
    assert settings.worker_id not in await listed(api)


async def test_a_worker_serving_every_queue_lists_star(
    api: Api, service_settings: SettingsFactory, kafka_topics: dict[str, str]
) -> None:
    settings = worker_settings(service_settings, worker_queues="")
    service = WorkerService(settings)
    await service.start()
    try:
        workers = await poll_until(lambda: listed(api), lambda ws: settings.worker_id in ws)
        assert workers[settings.worker_id]["queues"] == ["*"]
    finally:
        await service.stop()


async def test_a_worker_that_stops_heartbeating_shows_gone_then_leaves(api: Api) -> None:
    await register_like_a_worker(api.dispatcher, "frozen", lease_ms=600, queues=["x"], jobIds=[str(uuid.uuid4())])
    item = (await listed(api))["frozen"]
    assert (item["status"], item["host"], item["pid"], item["queues"], item["concurrency"]) == (
        "active", "box-1", 4242, ["x"], 2)
    beat = item["lastHeartbeatAt"]

    # No heartbeat for longer than the lease: its entry expires and it shows gone, still listed.
    gone = (await poll_until(lambda: listed(api), lambda ws: ws["frozen"]["status"] == "gone", timeout_s=5))["frozen"]
    assert gone == {
        "workerId": "frozen", "host": None, "pid": None, "queues": [], "concurrency": None, "running": [],
        "status": "gone", "startedAt": None, "lastHeartbeatAt": beat,
    }
    # Gone for longer than GONE_LISTED_MS: no longer listed.
    await api.dispatcher.redis.zadd(api.dispatcher.keys.workers, {"frozen": now_ms() - GONE_LISTED_MS - 60_000})
    assert "frozen" not in await listed(api)


async def test_a_stopping_worker_shows_draining(api: Api) -> None:
    await register_like_a_worker(api.dispatcher, "leaving", lease_ms=3000, status="draining")
    assert (await listed(api))["leaving"]["status"] == "draining"


async def test_workers_need_the_cluster_scope(api: Api) -> None:
    everything_but_cluster = frozenset({Scope.SUBMIT, Scope.READ, Scope.ADMIN})
    key = await create_api_key(api.pool, DEFAULT_TENANT, everything_but_cluster, "no-cluster")
    response = await api.anonymous.get("/api/v1/workers", headers=bearer(key))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "cluster" in response.json()["detail"]
    assert (await api.anonymous.get("/api/v1/workers")).status_code == 401


async def test_redis_down_is_503(api: Api) -> None:
    nowhere = connect(f"redis://127.0.0.1:{free_port()}", timeout_s=0.5)
    deps = ApiDeps(settings=api.settings, pool=api.pool, dispatcher=Dispatcher(nowhere, api.settings.redis_key_prefix))
    transport = httpx.ASGITransport(app=create_app(deps))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=bearer(api.key)) as c:
            response = await c.get("/api/v1/workers")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
    finally:
        await nowhere.aclose()
