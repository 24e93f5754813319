"""Issue-11 figures: `dashboard`, the dashboard in Debian's chromium against a bench cluster.

firstLoadMs: a cold load of the overview (fresh browser context) until its figures are on screen.
jobsFilterMs: the jobs page answering a status filter change (select → rows drawn) with a seeded history of
1,000,000 jobs (bench/seed_history.py; the quick run seeds 100,000). bundleGzipKb: every built JS and CSS
file, gzipped. liveUpdateMs: a job's `completed` event (its occurredAt) to its row's badge reading
`completed` (checked every animation frame). longestFrameMs: the longest gap between animation frames on
the live jobs page while about 1,000 events/s flow (250 no-op jobs/s, 4 events each) for 60 s (quick: 15 s),
with the JS heap before and after.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from bench import cluster
from bench.metrics_routes import database_url
from bench.scenarios import end_to_end, http_client, percentiles
from bench.seed_history import seed

DIST = cluster.ROOT / "dashboard" / "dist"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"]
KEY_STORAGE = "conveyor.apiKey"  # dashboard/src/lib/session.ts
HISTORY_JOBS = 1_000_000
LOAD_JOBS_PER_S = 250  # x 4 events each (submitted, dispatched, started, completed)
FILTERS = ("completed", "failed", "cancelled", "")  # status select values; "" = any

# Counts the notifier's messages the page receives (to report the event rate it really saw).
COUNT_MESSAGES = """
(() => {
  const Native = window.WebSocket;
  window.__messages = 0;
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); this.addEventListener('message', () => { window.__messages++; }); }
  };
})();
"""

# Resolves with the ms from the status select's change to the first frame after the list left "Loading…"
# (the note turns to "Loading…" at once, in a microtask, and back when the new rows are rendered).
FILTER_CHANGE = """
async (status) => {
  const select = document.querySelector('select[name=status]');
  const note = document.querySelector('.page p.muted[aria-live]');
  let sawLoading = false;
  const began = performance.now();
  const rendered = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const loading = (note.textContent ?? '').startsWith('Loading');
      sawLoading ||= loading;
      if (sawLoading && !loading) { observer.disconnect(); resolve(); }
    });
    observer.observe(note, { childList: true, subtree: true, characterData: true });
  });
  select.value = status;
  select.dispatchEvent(new Event('change', { bubbles: true }));
  await Promise.race([rendered, new Promise((r) => setTimeout(r, 30000))]);
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - began;
}
"""

# Watches rows every frame and notes (epoch ms) when each job's badge first reads `completed`.
WATCH_COMPLETED = """
(() => {
  window.__completedAt = {};
  const look = () => {
    for (const row of document.querySelectorAll('[data-job-id]')) {
      const id = row.getAttribute('data-job-id');
      if (!(id in window.__completedAt) && row.querySelector('.badge')?.textContent === 'completed') {
        window.__completedAt[id] = performance.timeOrigin + performance.now();
      }
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
})()
"""

# Records the gaps between animation frames until __stopFrames is set.
WATCH_FRAMES = """
(() => {
  window.__frames = [];
  window.__slowFrames = [];
  window.__stopFrames = false;
  const began = performance.now();
  let last = began;
  const tick = (now) => {
    window.__frames.push(now - last);
    if (now - last > 50) window.__slowFrames.push([Math.round((now - began) / 100) / 10, Math.round(now - last)]);
    last = now;
    if (!window.__stopFrames) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})()
"""


def bundle_gzip_kb() -> dict[str, float]:
    """Gzipped size of the built dashboard: everything, and what the first page needs (not the charts chunk)."""
    files = [p for p in (DIST / "assets").iterdir() if p.suffix in (".js", ".css")]
    size = {p.name: len(gzip.compress(p.read_bytes(), 9)) / 1024 for p in files}
    initial = sum(v for name, v in size.items() if not name.startswith("Charts"))
    return {"total": round(sum(size.values()), 1), "initial": round(initial, 1)}


async def signed_in(browser: Browser, c: cluster.Cluster, script: str = "") -> tuple[BrowserContext, Page]:
    """A fresh context (cold cache, own session storage) holding the bench key."""
    context = await browser.new_context(base_url=c.api_url, viewport={"width": 1400, "height": 900})
    key = json.dumps(c.api_key)
    await context.add_init_script(f"sessionStorage.setItem({json.dumps(KEY_STORAGE)}, {key});{script}")
    return context, await context.new_page()


async def first_load(browser: Browser, c: cluster.Cluster, loads: int) -> dict[str, Any]:
    """Cold loads of the overview: navigation start to its queue rows drawn, and to the load event."""
    ready: list[float] = []
    load_event: list[float] = []
    for _ in range(loads):
        context, page = await signed_in(browser, c)
        await page.goto("/")
        await page.locator("tr[data-queue]").first.wait_for(timeout=30_000)
        ready.append(await page.evaluate("performance.now()"))
        load_event.append(await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        await context.close()
    return {"readyMs": round(statistics.median(ready)), "loadEventMs": round(statistics.median(load_event))}


async def live_updates(browser: Browser, c: cluster.Cluster, jobs: int) -> dict[str, Any]:
    """Submit jobs one by one; event time to row-shows-completed time."""
    context, page = await signed_in(browser, c)
    await page.goto("/jobs")
    await page.locator(".live-live").wait_for(timeout=30_000)
    await page.evaluate(WATCH_COMPLETED)
    ids: list[str] = []
    async with http_client(c.api_url, c.api_key) as client:
        for _ in range(jobs):
            async with client.post("/api/v1/jobs", json={"queue": "bench-live", "jobType": "noop"}) as r:
                ids.append((await r.json())["jobId"])
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 30
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            seen = await page.evaluate("window.__completedAt")
            if all(i in seen for i in ids):
                break
            await asyncio.sleep(0.2)
        took: list[float] = []
        missed: list[dict[str, Any]] = []
        for job_id in ids:
            # The audit trail is analytics' to write (about half a second behind when idle): the
            # last rows can turn completed before their event is in it.
            patience = time.monotonic() + 5
            while True:
                async with client.get(f"/api/v1/jobs/{job_id}/events") as r:
                    events = (await r.json())["items"]
                done = [e for e in events if e["type"] == "completed"]
                if done or job_id not in seen or time.monotonic() > patience:
                    break
                await asyncio.sleep(0.2)
            if job_id in seen and done:
                occurred = datetime.fromisoformat(done[0]["occurredAt"].replace("Z", "+00:00"))
                took.append(seen[job_id] - occurred.timestamp() * 1000)
            elif len(missed) < 5:  # why: no row, a row stuck at another status, or no completed event
                badge = await page.evaluate(
                    f"document.querySelector('[data-job-id=\"{job_id}\"] .badge')?.textContent ?? null")
                missed.append({"jobId": job_id, "row": badge, "events": [e["type"] for e in events]})
    await context.close()
    return {**percentiles(took), "missed": len(ids) - len(took), "missedSample": missed}


async def frames_under_load(browser: Browser, c: cluster.Cluster, seconds: float) -> dict[str, Any]:
    """The live jobs page while LOAD_JOBS_PER_S no-op jobs a second run: longest frame gap, heap."""
    context, page = await signed_in(browser, c, COUNT_MESSAGES)
    await page.goto("/jobs")
    await page.locator(".live-live").wait_for(timeout=30_000)
    heap_before = await page.evaluate("performance.memory.usedJSHeapSize")
    await page.evaluate(WATCH_FRAMES)
    began = time.monotonic()
    async with http_client(c.api_url, c.api_key) as client:
        tick = 0.2
        per_tick = int(LOAD_JOBS_PER_S * tick)
        heap: list[float] = []  # MiB every ~10 s: flat once the list holds its most rows
        while time.monotonic() - began < seconds:
            if len(heap) < (time.monotonic() - began) / 10:
                heap.append(round(await page.evaluate("performance.memory.usedJSHeapSize") / 2**20, 1))
            next_at = time.monotonic() + tick
            batch = {"jobs": [{"queue": "bench-frames", "jobType": "noop"}] * per_tick}
            async with client.post("/api/v1/job-batches", json=batch) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /job-batches answered {r.status}")
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.sleep(2)  # the tail of the load drains
    await page.evaluate("window.__stopFrames = true")
    frames: list[float] = await page.evaluate("window.__frames")
    messages: int = await page.evaluate("window.__messages")
    slow: list[list[float]] = await page.evaluate("window.__slowFrames")
    await page.evaluate("window.gc ? window.gc() : null")
    heap_after = await page.evaluate("performance.memory.usedJSHeapSize")
    rows = await page.locator("[data-job-id]").count()
    await context.close()
    elapsed = time.monotonic() - began
    return {
        "longestFrameMs": round(max(frames), 1), "frames": percentiles(frames), "seconds": round(elapsed, 1),
        "eventsPerSecond": round(messages / elapsed), "heapMb": {"before": round(heap_before / 2**20, 1),
                                                               "every10s": heap, "after": round(heap_after / 2**20, 1)},
        "rowsInDom": rows, "slowFrames": {"count": len(slow), "first": slow[:5]},  # [seconds in, ms]
    }


async def jobs_filter(browser: Browser, c: cluster.Cluster, rounds: int) -> dict[str, Any]:
    """Status filter changes on the jobs page, and the same GET /jobs calls timed alone."""
    context, page = await signed_in(browser, c)
    await page.goto("/jobs")
    await page.locator("[data-job-id]").first.wait_for(timeout=60_000)
    by_status: dict[str, list[float]] = {s or "any": [] for s in FILTERS}
    for _ in range(rounds):
        for status in FILTERS:
            by_status[status or "any"].append(await page.evaluate(FILTER_CHANGE, status))
    await context.close()
    api: dict[str, float] = {}
    async with http_client(c.api_url, c.api_key) as client:
        for params in ({"status": "completed"}, {"status": "failed"}, {"status": "cancelled"}, {},
                       {"queue": "reports"}, {"jobType": "charge"}, {"status": "running"}, {"q": "reindex"}):
            took = []
            for _ in range(3):
                start = time.perf_counter()
                async with client.get("/api/v1/jobs", params={**params, "limit": "100"}) as r:
                    await r.read()
                took.append((time.perf_counter() - start) * 1000)
            api["&".join(f"{k}={v}" for k, v in params.items()) or "none"] = round(min(took), 1)
    every = [ms for values in by_status.values() for ms in values]
    return {"p50": round(statistics.median(every), 1), "max": round(max(every), 1),
            "byStatus": {k: round(statistics.median(v), 1) for k, v in by_status.items()}, "apiMs": api}


async def dashboard(c: cluster.Cluster, home: Path, quick: bool) -> dict[str, Any]:
    """Every dashboard figure on one cluster: warm it like `make dev` use, measure, then seed and filter."""
    out: dict[str, Any] = {"bundleGzipKb": bundle_gzip_kb()}
    print(f"  bundle: {out['bundleGzipKb']}", flush=True)
    await end_to_end(c.api_url, c.api_key, total=1000)  # some queues and history on the overview
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            out["firstLoad"] = await first_load(browser, c, loads=5)
            print(f"  first load: {out['firstLoad']}", flush=True)
            out["liveUpdateMs"] = await live_updates(browser, c, jobs=30 if quick else 100)
            print(f"  live update: {out['liveUpdateMs']}", flush=True)
            out["underLoad"] = await frames_under_load(browser, c, seconds=15 if quick else 60)
            print(f"  under load: {out['underLoad']}", flush=True)
            jobs = HISTORY_JOBS // 10 if quick else HISTORY_JOBS
            print(f"  seeding {jobs:,} jobs of history ...", flush=True)
            seeded = await seed(database_url(home, c), jobs)
            out["historyJobs"] = jobs
            out["jobsFilter"] = await jobs_filter(browser, c, rounds=3)
            print(f"  jobs filter: {out['jobsFilter']} (seeded in {seeded['seconds']} s)", flush=True)
        finally:
            await browser.close()
    bundle = out.pop("bundleGzipKb")
    return {"firstLoadMs": out["firstLoad"]["readyMs"], "jobsFilterMs": out["jobsFilter"]["max"],
            "bundleGzipKb": bundle["total"], "liveUpdateMs": out.pop("liveUpdateMs"),
            "longestFrameMs": out["underLoad"]["longestFrameMs"], "bundleInitialGzipKb": bundle["initial"], **out}
