"""The asyncpg pool every service uses: jsonb decoded with orjson, timeouts on every call."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shared import jsonutil
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# Batched statements join an array of ids against jobs (UPDATE ... FROM unnest(...)). With the
# default random_page_cost of 4 the planner prices a thousand primary-key lookups above one scan
# of the whole table, and picks the scan: every batch then costs O(table) and the system slows as
# history accumulates. 1.1 is the usual value for SSDs and page-cached data; it keeps those joins
# on the index (measured: a 2,000-row projection at 20k rows 10 -> 7 ms, growing with the table).
SERVER_SETTINGS = {"application_name": "conveyor", "random_page_cost": "1.1"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=jsonutil.dumps_str, decoder=jsonutil.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    # asyncpg still rolls back an open transaction before calling this.
    return None


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    session_reset: bool = True,
) -> asyncpg.Pool:
    """Open a pool; raises if Postgres does not answer within `connect_timeout`.

    `session_reset=False` skips asyncpg's reset query on every release (a round trip): only for
    callers that never leave session state (advisory locks, SET, LISTEN) on a connection."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=connect_timeout,
        init=_init_connection,
        server_settings=SERVER_SETTINGS,
        **({} if session_reset else {"reset": _keep_session}),
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Close gracefully within `timeout_s`, else terminate the connections."""
    try:
        await asyncio.wait_for(pool.close(), timeout=timeout_s)
    except TimeoutError:
        log.warning("postgres pool did not close in %.0fs; terminating", timeout_s)
        pool.terminate()


async def pool_for(settings: CommonSettings, *, session_reset: bool = True) -> asyncpg.Pool:
    """A pool sized and timed by a service's settings."""
    return await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout_s, session_reset=session_reset,
    )
