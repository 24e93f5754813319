"""Helpers of the dashboard's browser tests: waiting for the live stream, axe, realistic seed data."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from deploy.local.dashboard import DASHBOARD_DIR

PAGES = {
    "overview": "/", "jobs": "/jobs", "queues": "/queues", "dead-letters": "/dlq", "schedules": "/schedules",
    "workers": "/workers", "charts": "/charts", "alerts": "/alerts",
}
AXE = DASHBOARD_DIR / "node_modules" / "axe-core" / "axe.min.js"
UI_TIMEOUT_MS = 20_000


async def live(page: Page) -> None:
    """Wait until the page's WebSocket is subscribed (the nav says `live`)."""
    await expect(page.locator(".live-live")).to_be_visible(timeout=UI_TIMEOUT_MS)


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]


async def seed(client: httpx.AsyncClient) -> None:
    """Some realistic data for the pages (and their screenshots): several queues, outcomes, schedules, a rule."""
    jobs: list[dict[str, Any]] = []
    for i in range(8):
        jobs.append({"queue": "emails", "jobType": "echo", "payload": {"to": f"user{i}@example.com"},
                     "tags": ["welcome"]})
        jobs.append({"queue": "reports", "jobType": "sleep", "payload": {"ms": 300 + 400 * i}})
    declined = {"mode": "permanent", "message": "card declined"}
    jobs += [{"queue": "billing", "jobType": "fail", "maxAttempts": 1, "payload": declined} for _ in range(3)]
    jobs += [{"queue": "billing", "jobType": "fail", "maxAttempts": 3,
              "retry": {"strategy": "fixed", "baseDelayMs": 200}, "payload": {"mode": "transient", "failTimes": 1}}
             for _ in range(3)]
    assert (await client.post("/job-batches", json={"jobs": jobs})).status_code == 201
    assert (await client.post("/job-batches", json={"jobs": pipeline()})).status_code == 201
    config = {"rateLimit": {"limit": 50, "periodMs": 1000}, "concurrency": 20, "maxLength": 10_000}
    assert (await client.put("/queues/reports", json=config)).status_code == 200
    rule = {"name": "billing failures", "queue": "billing", "metric": "failure_rate", "op": ">", "threshold": 0.05,
            "forS": 300}
    assert (await client.post("/alert-rules", json=rule)).status_code == 201
    for schedule in ({"name": "nightly-report", "cron": "0 3 * * *", "queue": "reports", "jobType": "noop"},
                     {"name": "digest", "cron": "*/15 9-17 * * 1-5", "timezone": "Europe/Berlin", "queue": "emails",
                      "jobType": "echo"}):
        assert (await client.post("/scheduled-jobs", json=schedule)).status_code == 201


def pipeline() -> list[dict[str, Any]]:
    """A batch whose jobs depend on each other: extract, three transforms, a load that waits for all."""
    def job(ref: str, job_type: str, depends_on: list[str], ms: int = 200) -> dict[str, Any]:
        return {"ref": ref, "queue": "etl", "jobType": job_type, "payload": {"ms": ms}, "dependsOn": depends_on}

    return [
        job("extract", "sleep", []),
        *(job(f"transform-{i}", "sleep", ["extract"], 150 * i) for i in (1, 2, 3)),
        job("load", "sleep", ["transform-1", "transform-2", "transform-3"]),
        job("report", "echo", ["load"]),
    ]
