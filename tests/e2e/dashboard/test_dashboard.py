"""The dashboard in a real browser against a real cluster: sign-in, live rows, pause, DLQ retry, every page clean."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from deploy.local.dashboard import DASHBOARD_DIR
from tests.e2e.dashboard.conftest import OpenTab, screenshot_dir
from tests.e2e.support import api, submit, wait_for
from tests.fixtures.cluster import Cluster

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

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
    """Some realistic data for the pages (and their screenshots): several queues, outcomes, a schedule."""
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
    config = {"rateLimit": {"limit": 50, "periodMs": 1000}, "concurrency": 20, "maxLength": 10_000}
    assert (await client.put("/queues/reports", json=config)).status_code == 200
    for schedule in ({"name": "nightly-report", "cron": "0 3 * * *", "queue": "reports", "jobType": "noop"},
                     {"name": "digest", "cron": "*/15 9-17 * * 1-5", "timezone": "Europe/Berlin", "queue": "emails",
                      "jobType": "echo"}):
        assert (await client.post("/scheduled-jobs", json=schedule)).status_code == 201


async def test_sign_in_says_a_wrong_key_is_wrong_then_accepts_the_right_one(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    tab = await open_tab("/jobs", signed_in=False)
    key = tab.page.get_by_label("API key")
    await key.fill("cvy_not-a-real-key")
    await tab.page.get_by_role("button", name="Sign in").click()
    await expect(tab.page.get_by_role("alert")).to_contain_text("That API key is not valid", timeout=UI_TIMEOUT_MS)
    await key.fill(dash_cluster.api_key)
    await tab.page.get_by_role("button", name="Sign in").click()
    await expect(tab.page.get_by_role("heading", name="Jobs")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await live(tab.page)
    stored = await tab.page.evaluate("sessionStorage.getItem('conveyor.apiKey')")
    assert stored == dash_cluster.api_key


async def test_a_submitted_job_appears_and_turns_completed_without_a_reload(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    tab = await open_tab("/jobs")
    await live(tab.page)
    async with api(dash_cluster) as client:
        submitted = time.monotonic()
        job_id = await submit(client, queue="live", jobType="sleep", payload={"ms": 1500})
        row = tab.page.locator(f'[data-job-id="{job_id}"]')
        await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
        print(f"dashboard: submit-to-row {1000 * (time.monotonic() - submitted):.0f} ms")
        await expect(row.locator(".badge")).to_have_text("completed", timeout=UI_TIMEOUT_MS)
        assert (await wait_for(client, job_id))["status"] == "completed"
    assert tab.errors == []


async def test_the_page_reconnects_after_the_notifier_restarts(open_tab: OpenTab, dash_cluster: Cluster) -> None:
    tab = await open_tab("/jobs")
    await live(tab.page)
    await dash_cluster.supervisor.kill("notifier", signal.SIGKILL)  # restarted by the supervisor
    await expect(tab.page.locator(".live-live")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    await dash_cluster.supervisor.wait_ready("notifier", timeout_s=60)
    await expect(tab.page.locator(".live-live")).to_be_visible(timeout=30_000)  # backoff is at most 10 s
    async with api(dash_cluster) as client:
        job_id = await submit(client, queue="live", jobType="noop")
        await expect(tab.page.locator(f'[data-job-id="{job_id}"] .badge')).to_have_text("completed",
                                                                                         timeout=UI_TIMEOUT_MS)
    # The browser reports each refused handshake while the notifier was down; nothing else.
    assert [e for e in tab.errors if "WebSocket" not in e] == []


async def test_pausing_a_queue_on_the_page_stops_dispatch_and_the_drawer_says_why(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    async with api(dash_cluster) as client:
        first = await submit(client, queue="pausable")
        await wait_for(client, first)
        tab = await open_tab("/queues")
        await tab.page.get_by_role("button", name="Pause queue pausable").click()
        row = tab.page.locator('tr[data-queue="pausable"]')
        await expect(row.get_by_text("paused", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
        assert (await client.get("/queues/pausable")).json()["paused"] is True

        waiting = await submit(client, queue="pausable")
        await asyncio.sleep(2.0)  # long enough for an unpaused queue to run a noop many times over
        assert (await client.get(f"/jobs/{waiting}")).json()["status"] not in ("running", "completed")

        # A deep link on a fresh page opens the drawer over the list.
        drawer = (await open_tab(f"/jobs/{waiting}")).page.get_by_role("dialog")
        await expect(drawer).to_contain_text("Why it waits:", timeout=UI_TIMEOUT_MS)
        await expect(drawer.locator(".waiting")).to_have_attribute("data-code", "paused")
        await expect(drawer.locator(".waiting")).to_contain_text("is paused")

        await tab.page.get_by_role("button", name="Resume queue pausable").click()
        assert (await wait_for(client, waiting))["status"] == "completed"
    assert tab.errors == []


async def test_bulk_retry_of_dead_letters_from_the_page_reruns_them(open_tab: OpenTab, dash_cluster: Cluster) -> None:
    async with api(dash_cluster) as client:
        # Fails its first attempt only: with one attempt allowed it is dead-lettered, and a retry succeeds.
        ids = [
            await submit(client, queue="dlq-e2e", jobType="fail", maxAttempts=1,
                         payload={"mode": "transient", "failTimes": 1})
            for _ in range(3)
        ]
        for job_id in ids:
            assert (await wait_for(client, job_id))["status"] == "failed"
        tab = await open_tab("/dlq")
        await tab.page.get_by_label("Queue").fill("dlq-e2e")
        await tab.page.get_by_role("button", name="Apply").click()
        for job_id in ids:
            await expect(tab.page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
        await tab.page.get_by_label("Select every listed job").check()
        await tab.page.get_by_role("button", name="Retry selected (3)").click()
        await expect(tab.page.get_by_role("status").filter(has_text="Retried: 3 jobs.")).to_be_visible(
            timeout=UI_TIMEOUT_MS)
        for job_id in ids:
            job = await wait_for(client, job_id)
            assert job["status"] == "completed" and job["attempts"] == 2, job
    assert tab.errors == []


async def test_the_queue_form_shows_a_422_next_to_its_field_and_saves_a_valid_config(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    async with api(dash_cluster) as client:
        assert (await client.put("/queues/configured", json={"concurrency": 5})).status_code == 200
        tab = await open_tab("/queues")
        await tab.page.get_by_role("button", name="Configure queue configured").click()
        concurrency = tab.page.get_by_label("Concurrency", exact=True)
        await expect(concurrency).to_have_value("5")
        await concurrency.fill("0")
        await tab.page.get_by_role("button", name="Save config").click()
        await expect(tab.page.locator("#q-concurrency-error")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(concurrency).to_have_attribute("aria-invalid", "true")
        assert (await client.get("/queues/configured")).json()["config"]["concurrency"] == 5  # nothing half-written
        await concurrency.fill("7")
        await tab.page.get_by_label("Max length (backlog)").fill("1000")
        await tab.page.get_by_role("button", name="Save config").click()
        await expect(tab.page.get_by_text("Saved.")).to_be_visible(timeout=UI_TIMEOUT_MS)
        config = (await client.get("/queues/configured")).json()["config"]
        assert config["concurrency"] == 7 and config["maxLength"] == 1000
    assert [e for e in tab.errors if "422" not in e] == []  # the browser logs the 422 it was shown


async def test_a_schedule_created_on_the_page_previews_its_fire_times_and_triggers(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    tab = await open_tab("/schedules")
    await tab.page.get_by_role("button", name="New schedule").click()
    await tab.page.get_by_label("Name").fill("hourly-e2e")
    cron = tab.page.get_by_label("Cron (5 fields)")
    await cron.fill("0 *")
    preview = tab.page.get_by_label("Next fire times")
    await expect(preview).to_contain_text("5 fields")
    await cron.fill("0 * * * *")
    await expect(preview.locator(".chip")).to_have_count(5)
    await tab.page.get_by_label("Job type").fill("echo")
    await tab.page.get_by_role("button", name="Create schedule").click()
    row = tab.page.locator('tr[data-schedule="hourly-e2e"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await row.get_by_role("button", name="Trigger now").click()
    status = tab.page.get_by_role("status").filter(has_text="Triggered hourly-e2e: job ")
    await expect(status).to_be_visible(timeout=UI_TIMEOUT_MS)
    job_id = (await status.inner_text()).rsplit(" ", 1)[-1]
    async with api(dash_cluster) as client:
        assert (await wait_for(client, job_id))["status"] == "completed"
    assert tab.errors == []


async def test_every_page_loads_without_console_errors_or_serious_axe_violations(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    async with api(dash_cluster) as client:
        await seed(client)
        payload = {"to": "ada@example.com", "template": "welcome"}
        job_id = await submit(client, queue="emails", jobType="echo", payload=payload, tags=["welcome"])
        await wait_for(client, job_id)
    shots = screenshot_dir()
    problems: dict[str, Any] = {}
    for name, path in {**PAGES, "job-drawer": f"/jobs/{job_id}"}.items():
        tab = await open_tab(path)
        await expect(tab.page.locator("h1")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await live(tab.page)
        if path == "/queues":  # the config form too
            await tab.page.get_by_role("button", name="Configure queue reports").click()
            await expect(tab.page.get_by_label("Concurrency", exact=True)).to_have_value("20")
        await tab.page.wait_for_load_state("networkidle")
        if path == "/":
            load = await tab.page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            print(f"dashboard: first load {load:.0f} ms")
        if shots is not None:
            await tab.page.screenshot(path=str(shots / f"{name}.png"))
        violations = await serious_violations(tab.page)
        if violations or tab.errors:
            problems[path] = {"axe": violations, "console": tab.errors}
    assert problems == {}


async def test_deep_links_and_assets_are_served_with_their_cache_headers(dash_cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=dash_cluster.api_url, timeout=10) as client:
        page = await client.get("/jobs/6f1c0b7e-2b1e-4a57-9d0e-8c2f3a4b5c6d")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
        asset = next(part.split('"')[0] for part in page.text.split('src="')[1:] if part.startswith("/assets/"))
        served = await client.get(asset)
        assert served.status_code == 200
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
