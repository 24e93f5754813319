"""Connection helpers: every acquire is bounded so an exhausted pool answers 503, not a hung request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ACQUIRE_TIMEOUT_S = 5.0

PING = "SELECT 1"


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection inside a transaction (committed when the block ends without error)."""
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
        yield conn


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for reads (autocommit)."""
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
        yield conn


async def ping(pool: asyncpg.Pool) -> bool:
    """Whether Postgres answers a trivial query (the caller bounds the wait)."""
    async with pool.acquire() as conn:
        return bool(await conn.fetchval(PING) == 1)
