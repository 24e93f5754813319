"""Every SQL statement of the scheduler: named statements next to the thin typed functions that run them.

`jobs` holds the row reads and writes of dispatch, promotion and lost leases; `projection` the
batched writes of worker events; `reconcile` the pages, cut-off and lock of reconciliation.
"""

from __future__ import annotations

import asyncpg

PING = "SELECT 1"


async def ping(pool: asyncpg.Pool, timeout_s: float) -> None:
    """One trivial query: raises if Postgres does not answer in time."""
    async with pool.acquire(timeout=timeout_s) as conn:
        await conn.fetchval(PING, timeout=timeout_s)
