"""/healthz, /readyz and /metrics (no prefix), through the shared health routes."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from fastapi import FastAPI

from shared.http_server import add_health_routes

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 1.0


def install_health(app: FastAPI, pool: asyncpg.Pool) -> None:
    """Ready = Postgres answers `SELECT 1` within a second (Kafka and Redis outages do not stop submissions)."""

    async def ready() -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                async with pool.acquire() as conn:
                    return bool(await conn.fetchval("SELECT 1") == 1)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("not ready: postgres: %r", exc)
            return False

    add_health_routes(app, ready)
