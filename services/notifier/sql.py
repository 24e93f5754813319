"""The notifier's own SQL (API keys are resolved by `shared.auth`): named statements, thin typed functions."""

from __future__ import annotations

import asyncpg

PING = "SELECT 1"


async def ping(pool: asyncpg.Pool, *, timeout_s: float) -> None:
    """One round trip to Postgres; raises if it does not answer within `timeout_s`."""
    await pool.fetchval(PING, timeout=timeout_s)
