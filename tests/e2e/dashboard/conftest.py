"""One cluster and one Debian chromium per module, for the dashboard's browser tests.

The browser is the system's `/usr/bin/chromium` (Debian package; `.ci/run` installs it), driven by
Playwright for Python; nothing is downloaded. Playwright gives every launch a fresh profile folder.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from deploy.local.dashboard import DASHBOARD_DIR, ensure_built
from deploy.local.servers import KafkaBroker, PostgresServer
from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.servers import TEMPLATE_DB

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps dialling Google on a closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
KEY_STORAGE = "conveyor.apiKey"  # dashboard/src/lib/session.ts


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dash_cluster(
    pg_server: PostgresServer, template_db: str, redis_url: str, kafka_broker: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Cluster]:
    """Every service on a database of its own, the API serving the built dashboard."""
    if not ensure_built():
        pytest.fail(f"the dashboard could not be built in {DASHBOARD_DIR} (needs node >= 20 and npm)")
    name = f"t_{uuid.uuid4().hex}"
    database_url = pg_server.create_database(name, template=TEMPLATE_DB)
    suffix = uuid.uuid4().hex[:8]
    try:
        async with start_cluster(
            database_url=database_url, redis_url=redis_url, redis_prefix=f"t{suffix}",
            topic_prefix=f"t{suffix}.", broker=kafka_broker, log_dir=tmp_path_factory.mktemp("dashboard-logs"),
            env={"DASHBOARD_DIR": str(DASHBOARD_DIR / "dist")},
        ) as cluster:
            yield cluster
    finally:
        pg_server.drop_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Tab:
    """A page of the dashboard and every console error and uncaught exception it produced."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")


OpenTab = Callable[..., Awaitable[Tab]]


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(dash_cluster: Cluster, browser: Browser) -> AsyncIterator[OpenTab]:
    """`await open_tab("/jobs", signed_in=True)`: a fresh browser context (own session storage) on a path."""
    contexts: list[BrowserContext] = []

    async def open_(path: str = "/", *, signed_in: bool = True) -> Tab:
        context = await browser.new_context(base_url=dash_cluster.api_url, viewport={"width": 1400, "height": 900})
        contexts.append(context)
        if signed_in:
            key = json.dumps(dash_cluster.api_key)
            await context.add_init_script(f"sessionStorage.setItem({json.dumps(KEY_STORAGE)}, {key})")
        page = await context.new_page()
        tab = Tab(page, context)
        page.on("console", tab.on_console)
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        await page.goto(path)
        return tab

    yield open_
    for context in contexts:
        await context.close()


def screenshot_dir() -> Path | None:
    """Where a run with CONVEYOR_SCREENSHOTS=1 writes the README's screenshots (docs/screenshots)."""
    import os

    if os.environ.get("CONVEYOR_SCREENSHOTS") != "1":
        return None
    folder = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
