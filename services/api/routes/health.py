"""/healthz, /readyz and /metrics (no prefix, open on purpose: probes and scrapers carry no key)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from fastapi import FastAPI

from services.api.store.connections import ping
from shared.http_server import add_health_routes

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 1.0


def install_health(app: FastAPI, pool: asyncpg.Pool) -> None:
    """Ready = Postgres answers `SELECT 1` within a second (Kafka and Redis outages do not stop submissions)."""

    async def ready() -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                return await ping(pool)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("not ready: postgres: %r", exc)
            return False

    add_health_routes(app, ready)
