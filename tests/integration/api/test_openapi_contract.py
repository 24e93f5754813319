"""The OpenAPI document tells the truth: schemathesis (all checks) against the api on real servers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from deploy.local.servers import free_port
from shared.http_server import HttpServer
from tests.integration.api.conftest import Api

ROOT = Path(__file__).resolve().parents[3]
# Seed, examples per operation, hooks and check settings, each with its reason.
CONFIG = Path(__file__).with_name("schemathesis.toml")


async def test_the_document_matches_the_service(api_factory: Any) -> None:
    api: Api = await api_factory(auth_required=True)
    port = free_port()
    # The app in this process and event loop (on the test's Postgres, Valkey and Tansu); the
    # schemathesis runner is a child process that calls it over loopback.
    server = HttpServer(api.app, "127.0.0.1", port)
    await server.start()
    try:
        runner = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
            # No --checks: every check runs, but those schemathesis.toml turns off (with its reason).
            "run", f"http://127.0.0.1:{port}/openapi.json", "--header", f"Authorization: Bearer {api.key}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(runner.communicate(), timeout=110)
    finally:
        await server.stop()
    report = output.decode(errors="replace")
    assert runner.returncode == 0, report
