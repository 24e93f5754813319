"""App-level behaviour: health, metrics, docs, unknown routes, the dashboard mount, the service lifecycle."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from deploy.local.servers import free_port
from services.api.service import ApiService
from shared.auth.keys import create_api_key
from shared.auth.principal import ALL_SCOPES, DEFAULT_TENANT
from tests.integration.api.conftest import Api, api_settings, bearer
from tests.integration.api.test_outbox_kafka import consume


async def test_health_ready_and_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    await api.submit()
    await api.client.post("/api/v1/jobs", json={"queue": "BAD"})
    text = (await api.client.get("/metrics")).text
    assert "conveyor_api_jobs_submitted_total" in text
    assert 'conveyor_api_requests_total{method="POST",route="/api/v1/jobs",status="422"}' in text
    assert 'conveyor_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/jobs"}' in text


async def test_not_ready_when_postgres_is_gone(api: Api) -> None:
    await api.pool.close()
    response = await api.client.get("/readyz")
    assert response.status_code == 503


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    for method, path, status in (("GET", "/api/v1/nope", 404), ("GET", "/nope", 404), ("PATCH", "/api/v1/jobs", 405)):
        response = await api.client.request(method, path)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["instance"] == path


async def test_openapi_documents_the_routes_and_the_bearer_scheme(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/retry", "/api/v1/jobs/{job_id}/events",
                 "/api/v1/job-batches", "/api/v1/job-batches/{batch_id}"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    body = spec["paths"]["/api/v1/job-batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/BatchSubmission"}
    assert "BatchJob" in spec["components"]["schemas"]
    assert (await api.client.get("/docs")).status_code == 200


# Every status each operation answers (besides its success), as schemathesis checks in test_openapi_contract.
DOCUMENTED = {
    ("post", "/api/v1/jobs"): {"200", "201", "400", "401", "403", "409", "413", "415", "422", "429", "503"},
    ("get", "/api/v1/jobs"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/jobs/{job_id}"): {"200", "401", "403", "404", "503"},
    ("delete", "/api/v1/jobs/{job_id}"): {"200", "202", "401", "403", "404", "409", "503"},
    ("post", "/api/v1/jobs/{job_id}/retry"): {"200", "401", "403", "404", "409", "503"},
    ("get", "/api/v1/jobs/{job_id}/events"): {"200", "401", "403", "404", "503"},
    ("get", "/api/v1/jobs/{job_id}/deliveries"): {"200", "401", "403", "404", "503"},
    ("post", "/api/v1/job-batches"): {"201", "400", "401", "403", "409", "413", "415", "422", "429", "503"},
    ("get", "/api/v1/job-batches/{batch_id}"): {"200", "401", "403", "404", "503"},
    ("get", "/api/v1/dlq"): {"200", "401", "403", "422", "503"},
    ("post", "/api/v1/dlq/retry"): {"200", "400", "401", "403", "413", "415", "422", "503"},
    ("post", "/api/v1/dlq/delete"): {"200", "400", "401", "403", "413", "415", "422", "503"},
    ("get", "/api/v1/dlq/export.csv"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/workers"): {"200", "401", "403", "503"},
    ("post", "/api/v1/scheduled-jobs"): {"201", "400", "401", "403", "413", "415", "422", "503"},
    ("get", "/api/v1/scheduled-jobs"): {"200", "401", "403", "503"},
    ("get", "/api/v1/scheduled-jobs/{schedule_id}"): {"200", "401", "403", "404", "503"},
    ("patch", "/api/v1/scheduled-jobs/{schedule_id}"): {"200", "400", "401", "403", "404", "413", "415", "422", "503"},
    ("delete", "/api/v1/scheduled-jobs/{schedule_id}"): {"204", "401", "403", "404", "503"},
    ("post", "/api/v1/scheduled-jobs/{schedule_id}/trigger"): {"202", "401", "403", "404", "429", "503"},
    ("get", "/api/v1/queues"): {"200", "401", "403", "503"},
    ("get", "/api/v1/queues/{name}"): {"200", "401", "403", "404", "422", "503"},
    ("put", "/api/v1/queues/{name}"): {"200", "400", "401", "403", "413", "415", "422", "503"},
    ("post", "/api/v1/queues/{name}/pause"): {"200", "401", "403", "422", "503"},
    ("post", "/api/v1/queues/{name}/resume"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/alerts"): {"200", "401", "403", "422", "503"},
    ("post", "/api/v1/alert-rules"): {"201", "400", "401", "403", "413", "415", "422", "503"},
    ("get", "/api/v1/alert-rules"): {"200", "401", "403", "503"},
    ("get", "/api/v1/alert-rules/{rule_id}"): {"200", "401", "403", "404", "503"},
    ("patch", "/api/v1/alert-rules/{rule_id}"): {"200", "400", "401", "403", "404", "413", "415", "422", "503"},
    ("delete", "/api/v1/alert-rules/{rule_id}"): {"204", "401", "403", "404", "503"},
    ("get", "/api/v1/stats"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/metrics/queues"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/metrics/job-types"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/metrics/job-duration-histogram"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/metrics/jobs/timeline"): {"200", "401", "403", "422", "503"},
    ("get", "/api/v1/metrics/workers"): {"200", "401", "403", "422", "503"},
}


async def test_openapi_documents_every_status_with_problem_details(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operations = {(method, path): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert set(operations) == set(DOCUMENTED)
    for key, statuses in DOCUMENTED.items():
        responses = operations[key]["responses"]
        assert set(responses) == statuses, key
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (key, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "errors"}
    cancel = operations[("delete", "/api/v1/jobs/{job_id}")]
    assert cancel["summary"] == "Cancel a job" and "not deleted" in cancel["description"]
    assert cancel["operationId"] == "cancelJob"
    assert operations[("post", "/api/v1/jobs")]["responses"]["201"]["headers"]["Location"]["required"] is True


async def test_method_not_allowed_names_every_method_of_the_path(api: Api) -> None:
    for path, allowed in (("/api/v1/jobs", "GET, POST"), (f"/api/v1/jobs/{uuid.uuid4()}", "DELETE, GET")):
        response = await api.client.request("OPTIONS", path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert response.headers["content-type"] == "application/problem+json"


async def test_dashboard_is_served_beside_the_api(api_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html>conveyor dashboard</html>")
    api: Api = await api_factory(dashboard_dir=str(tmp_path))
    page = await api.client.get("/")
    assert page.status_code == 200 and "conveyor dashboard" in page.text
    missing = await api.client.get("/api/v1/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await api.client.get("/api/v1/jobs")).status_code == 200
    # An API path with another method is still the API's 405, not the dashboard's 404.
    wrong_method = await api.client.get("/api/v1/dlq/retry")
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == "application/problem+json"


async def test_dashboard_deep_links_cache_headers_and_config(api_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html>conveyor dashboard</html>")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    api: Api = await api_factory(dashboard_dir=str(tmp_path), notifier_port=9101)
    for path in ("/", "/jobs/0b4c2a9e-6f1f-4bd4-9a57-1e0e3c1b2a11", "/queues"):
        page = await api.client.get(path)
        assert page.status_code == 200 and "conveyor dashboard" in page.text, path
        assert page.headers["cache-control"] == "no-cache", path
    asset = await api.client.get("/assets/index-abc123.js")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    for missing in ("/assets/gone-123.js", "/favicon.ico", "/api/v1/nope", "/api/v2/jobs", "/nope", "/jobs.json"):
        response = await api.client.get(missing)
        assert response.status_code == 404, missing
        assert response.headers["content-type"] == "application/problem+json", missing
    config = await api.client.get("/config.json")
    assert config.json() == {"notifierUrl": None, "notifierPort": 9101}


async def new_admin_key(database_url: str) -> str:
    """A key of the default tenant with every scope, for a service that runs on its own pool."""
    conn = await asyncpg.connect(database_url)
    try:
        return await create_api_key(conn, DEFAULT_TENANT, ALL_SCOPES, "test")
    finally:
        await conn.close()


async def test_service_lifecycle(
    database_url: str, redis_url: str, kafka_bootstrap: str, redis_prefix: str, topic_prefix: str,
    kafka_topics: dict[str, str],
) -> None:
    port = free_port()
    settings = api_settings(database_url, redis_url, kafka_bootstrap, redis_prefix, topic_prefix, api_port=port)
    assert settings.auth_required
    await ApiService(settings).stop()  # safe before start (and such a service stays stopped)
    service = ApiService(settings)
    await service.start()
    try:
        key = await new_admin_key(database_url)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=bearer(key)) as client:
            response = await client.post("/api/v1/jobs", json={"queue": "q", "jobType": "noop"})
            assert response.status_code == 201
        assert not service.failed.is_set()
    finally:
        await service.stop()
        await service.stop()  # idempotent
    [record] = await consume(kafka_bootstrap, kafka_topics["jobs.submitted"], 1)
    assert record.key.decode() == response.json()["jobId"]
    assert not service.failed.is_set()
