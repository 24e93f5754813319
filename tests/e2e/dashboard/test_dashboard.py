"""The dashboard in a real browser against a real cluster: sign-in, live rows, pause, DLQ retry, every page clean."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from bench.seed_history import seed as seed_history
from tests.e2e.dashboard.conftest import KEY_STORAGE, OpenTab, screenshot_dir
from tests.e2e.dashboard.pages import PAGES, UI_TIMEOUT_MS, live, pipeline, seed, serious_violations
from tests.e2e.support import api, submit, wait_for
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

CRON_SCHEDULE = "every-minute-e2e"
HISTORY_JOBS = 20_000  # bench/seed_history.py: a few seconds


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def minute_schedule(dash_cluster: Cluster, browser: Browser) -> AsyncIterator[dict[str, Any]]:
    """A `* * * * *` schedule created on the Schedules page when the module starts, so that its first fire
    (up to a minute later) is awaited by the module's last test while the others run."""
    context = await browser.new_context(base_url=dash_cluster.api_url)
    key = json.dumps(dash_cluster.api_key)
    await context.add_init_script(f"sessionStorage.setItem({json.dumps(KEY_STORAGE)}, {key})")
    page = await context.new_page()
    await page.goto("/schedules")
    await page.get_by_role("button", name="New schedule").click()
    await page.get_by_label("Name").fill(CRON_SCHEDULE)
    await page.get_by_label("Cron (5 fields)").fill("* * * * *")
    await page.get_by_label("Queue", exact=True).fill("cron-e2e")
    await page.get_by_label("Job type").fill("noop")
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator(f'tr[data-schedule="{CRON_SCHEDULE}"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
    await context.close()
    async with api(dash_cluster) as client:
        found = [s for s in (await client.get("/scheduled-jobs")).json()["items"] if s["name"] == CRON_SCHEDULE]
        assert len(found) == 1 and found[0]["lastFiredAt"] is None, found
        yield found[0]
        await client.delete(f"/scheduled-jobs/{found[0]['id']}")


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
        # A no-op job's events (submitted ... completed) often reach the page within one frame: its row shows too.
        fast = await submit(client, queue="live", jobType="noop")
        await expect(tab.page.locator(f'[data-job-id="{fast}"] .badge')).to_have_text("completed",
                                                                                     timeout=UI_TIMEOUT_MS)
    assert tab.errors == []


async def test_the_page_reconnects_after_the_notifier_restarts(open_tab: OpenTab, dash_cluster: Cluster) -> None:
    tab = await open_tab("/jobs")
    await live(tab.page)
    async with api(dash_cluster) as client:
        seen = await submit(client, queue="live", jobType="noop")  # the page has an event to resume after
        await expect(tab.page.locator(f'[data-job-id="{seen}"] .badge')).to_have_text("completed",
                                                                                      timeout=UI_TIMEOUT_MS)
        await dash_cluster.supervisor.kill("notifier", signal.SIGKILL)  # restarted by the supervisor
        # Submitted and finished while the page has no stream: it arrives by the `since` catch-up, once.
        missed = await submit(client, queue="live", jobType="noop")
        assert (await wait_for(client, missed))["status"] == "completed"
    await dash_cluster.supervisor.wait_ready("notifier", timeout_s=60)
    await expect(tab.page.locator(".live-live")).to_be_visible(timeout=30_000)  # backoff is at most 10 s
    missed_row = tab.page.locator(f'[data-job-id="{missed}"]')
    await expect(missed_row.locator(".badge")).to_have_text("completed", timeout=UI_TIMEOUT_MS)
    assert await missed_row.count() == 1
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


async def test_a_long_dead_letter_list_keeps_only_the_rows_in_view(open_tab: OpenTab, dash_cluster: Cluster) -> None:
    async with api(dash_cluster) as client:
        batch = {"jobs": [{"queue": "dlq-many", "jobType": "fail", "maxAttempts": 1, "payload": {"mode": "permanent"}}
                          for _ in range(150)]}
        answer = await client.post("/job-batches", json=batch)
        assert answer.status_code == 201, answer.text

        async def dead() -> int:
            listed = await client.get("/dlq", params={"queue": "dlq-many", "limit": 200})
            return len(listed.json()["items"])

        await poll_until(dead, lambda n: n == 150, timeout_s=60)
    tab = await open_tab("/dlq")
    await tab.page.get_by_label("Queue").fill("dlq-many")
    await tab.page.get_by_role("button", name="Apply").click()
    rows = tab.page.locator("tr[data-job-id]")
    await expect(rows.first).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert 10 < await rows.count() < 60  # a window of the 150, not all of them
    await tab.page.get_by_label("Select every listed job").check()
    await expect(tab.page.get_by_role("button", name="Retry selected (150)")).to_be_visible()
    region = tab.page.get_by_role("region", name="Dead letters listed")
    await region.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    await expect(rows.last).to_be_in_viewport(timeout=UI_TIMEOUT_MS)
    assert 10 < await rows.count() < 60
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
    # A week of finished jobs with their aggregates, so the analytics pages draw real history.
    await seed_history(dash_cluster.database_url, HISTORY_JOBS, days=7)
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
        if shots is not None:  # the charts page is taller than the window: all of it
            await tab.page.screenshot(path=str(shots / f"{name}.png"), full_page=path == "/charts")
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


async def test_the_overview_shows_each_queues_figures_as_the_api_reports_them(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    queue = "overview-e2e"
    async with api(dash_cluster) as client:
        ids = [await submit(client, queue=queue, jobType="sleep", payload={"ms": 50 * i}) for i in range(1, 5)]
        ids += [await submit(client, queue=queue, jobType="fail", maxAttempts=1, payload={"mode": "permanent"})
                for _ in range(2)]
        for job_id in ids:
            await wait_for(client, job_id)

        async def figures(window: str) -> dict[str, Any]:
            items = (await client.get("/metrics/queues", params={"window": window})).json()["items"]
            return next((q for q in items if q["queue"] == queue), {"counts": {}})

        # The analytics service counts from the event stream: wait until it has seen every outcome.
        for window in ("1h", "15m"):
            await poll_until(functools.partial(figures, window),
                             lambda q: q["counts"].get("completed") == 4 and q["counts"].get("failed") == 2,
                             timeout_s=30, every_s=0.5)
        tab = await open_tab("/")
        row = tab.page.locator(f'tr[data-queue="{queue}"]')
        for window in ("1h", "15m"):
            if window != "1h":
                await tab.page.get_by_label("Window").select_option(window)
            metrics = await figures(window)
            await expect(row.locator('[data-col="completed"]')).to_have_text("4", timeout=UI_TIMEOUT_MS)
            await expect(row.locator('[data-col="failed"]')).to_have_text("2")
            await expect(row.locator('[data-col="waiting"]')).to_have_text(str(metrics["backlog"]))
            await expect(row.locator('[data-col="throughput"]')).to_have_text(f"{metrics['throughputPerMin']:.1f}")
            await expect(row.locator('[data-col="workers"]')).to_have_text(str(metrics["workersNeeded"] or "—"))
            await expect(row.locator(".health")).to_have_class("health health-bad")  # 4 of 6 succeeded: under 90 %
            await expect(row.locator('[data-col="p95"]')).not_to_have_text("—")
        stats = (await client.get("/stats", params={"window": "15m"})).json()
        big = tab.page.locator('[data-figure="Throughput"] strong')
        await expect(big).to_contain_text("/min")
        assert stats["throughputPerMin"] > 0
    assert tab.errors == []


async def test_an_alert_rule_made_on_the_page_is_validated_listed_edited_and_deleted(
    open_tab: OpenTab, dash_cluster: Cluster
) -> None:
    tab = await open_tab("/alerts")
    page = tab.page
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="New rule").click()
    await page.get_by_label("Rule name").fill("slow reports")
    await page.get_by_label("Queue (empty: every queue)").fill("reports")
    await page.get_by_label("Metric").select_option("p95_duration_ms")
    await page.get_by_label("Threshold").fill("5000")
    await page.get_by_label("For (seconds)").fill("-5")
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-forS-error")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_label("For (seconds)")).to_have_attribute("aria-invalid", "true")
    async with api(dash_cluster) as client:
        async def rules_named() -> list[dict[str, Any]]:
            return [r for r in (await client.get("/alert-rules")).json()["items"] if r["name"] == "slow reports"]

        assert await rules_named() == []  # nothing half-written
        await page.get_by_label("For (seconds)").fill("120")
        await page.get_by_role("button", name="Create rule").click()
        row = page.locator('tr[data-rule="slow reports"]')
        await expect(row).to_contain_text("p95 duration (ms) > 5000", timeout=UI_TIMEOUT_MS)
        [rule] = await rules_named()
        assert (rule["queue"], rule["metric"], rule["op"], rule["threshold"], rule["forS"]) == (
            "reports", "p95_duration_ms", ">", 5000, 120)

        await page.get_by_role("button", name="Edit rule slow reports").click()
        await expect(page.get_by_label("Threshold")).to_have_value("5000")
        await page.get_by_label("Threshold").fill("8000")
        await page.get_by_role("button", name="Save rule").click()
        await expect(row).to_contain_text("> 8000", timeout=UI_TIMEOUT_MS)
        assert (await client.get(f"/alert-rules/{rule['id']}")).json()["threshold"] == 8000

        await page.get_by_role("button", name="Delete rule slow reports").click()
        await expect(row).to_have_count(0, timeout=UI_TIMEOUT_MS)
        assert (await client.get(f"/alert-rules/{rule['id']}")).status_code == 404
    assert [e for e in tab.errors if "422" not in e] == []  # the browser logs the 422 it was shown


async def test_the_charts_draw_on_canvases_without_console_errors(open_tab: OpenTab, dash_cluster: Cluster) -> None:
    async with api(dash_cluster) as client:
        created = (await client.post("/job-batches", json={"jobs": pipeline()})).json()
        for job_id in created["jobIds"]:
            await wait_for(client, job_id)
    tab = await open_tab("/charts")
    page = tab.page
    for name in ("Processed over time by queue", "Success vs failure", "Duration histogram",
                 "Recent job runs per worker"):
        await expect(page.get_by_role("region", name=name).locator("canvas").first).to_be_visible(
            timeout=UI_TIMEOUT_MS)
    graph = page.get_by_role("region", name="Dependency graph of a batch")
    await graph.get_by_label("Batch id").fill(created["batchId"])
    await graph.get_by_role("button", name="Show").click()
    await expect(graph.get_by_role("img", name="Dependency graph: 6 jobs in 4 layers", exact=False)).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    heatmap = page.get_by_role("table", name="Jobs submitted per hour, one row a day, local time")
    await expect(heatmap.locator("tbody tr").first).to_be_visible()
    assert await page.locator("canvas").count() >= 5
    assert tab.errors == []


async def test_the_every_minute_schedule_created_on_the_page_fires(
    open_tab: OpenTab, dash_cluster: Cluster, minute_schedule: dict[str, Any]
) -> None:
    # Last in the module: the schedule was created when the module started, a minute boundary ago or less.
    async with api(dash_cluster) as client:
        async def fired() -> dict[str, Any]:
            found: dict[str, Any] = (await client.get(f"/scheduled-jobs/{minute_schedule['id']}")).json()
            return found

        schedule = await poll_until(fired, lambda s: s["lastFiredAt"] is not None, timeout_s=75, every_s=1)
        jobs = (await client.get("/jobs", params={"queue": "cron-e2e"})).json()["items"]
        assert jobs and jobs[-1]["jobType"] == "noop"
    tab = await open_tab("/schedules")
    row = tab.page.locator(f'tr[data-schedule="{CRON_SCHEDULE}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(row.locator("td").nth(4)).not_to_have_text("—")
    assert schedule["lastFiredAt"]
    assert tab.errors == []
