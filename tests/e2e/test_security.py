"""Secure by default (DESIGN §10): the real processes require a key unless told otherwise on loopback."""

from __future__ import annotations

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from deploy.local.supervisor import ServiceFailed
from tests.fixtures.cluster import Cluster, ClusterFactory

pytestmark = pytest.mark.slow


@pytest.mark.cluster(services=("api", "notifier"))
async def test_a_caller_without_a_key_is_refused_and_health_stays_open(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        anonymous = await http.get(f"{cluster.api_url}/api/v1/jobs")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        keyed = await http.get(f"{cluster.api_url}/api/v1/jobs", headers=cluster.auth_headers)
        assert keyed.status_code == 200, keyed.text
        for service in ("api", "notifier"):  # open on purpose: probes and Prometheus send no key
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(f"{cluster.url(service)}{path}")).status_code == 200, (service, path)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{cluster.notifier_url}/ws", open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
    async with websockets.connect(f"{cluster.notifier_url}/ws", additional_headers=cluster.auth_headers,
                                  open_timeout=10) as ws:
        await ws.send('{"type": "ping"}')
        assert "pong" in str(await ws.recv())


@pytest.mark.cluster(services=("api",), env={"AUTH_REQUIRED": "false"})
async def test_auth_off_on_loopback_makes_an_anonymous_caller_the_default_admin(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=f"{cluster.api_url}/api/v1", timeout=10) as http:
        created = await http.post("/jobs", json={"queue": "anon", "jobType": "noop"})
        assert created.status_code == 201, created.text
        job = await http.get(f"/jobs/{created.json()['jobId']}")
    assert job.status_code == 200, job.text


async def test_a_service_refuses_to_start_with_auth_off_on_every_interface(cluster_factory: ClusterFactory) -> None:
    with pytest.raises(ServiceFailed) as failed:
        async with cluster_factory(services=("api",), env={"AUTH_REQUIRED": "false", "HOST": "0.0.0.0"},
                                   ready_timeout_s=30):
            pass
    assert "AUTH_REQUIRED=false is allowed only when HOST is a loopback address" in str(failed.value)
