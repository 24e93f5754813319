"""The Redis mirror of every queue's controls, kept by the reconciler: after Redis lost it (FLUSHALL,
a restart without persistence) the `queues` rows are applied again, and the rate logs are refilled
from the starts Postgres recorded, so a Redis loss does not grant a fresh window."""

from __future__ import annotations

import logging

import asyncpg

from services.scheduler.store import queues as store
from shared.dispatch.config import DispatchConfig
from shared.dispatch.protocol import Dispatcher

log = logging.getLogger(__name__)


async def sync_queues(conn: asyncpg.Connection, dispatcher: Dispatcher, *, grace_s: float) -> int:
    """Re-apply each settled `queues` row whose mirror is missing or differs; returns how many were."""
    rows = await store.settled_queues(conn, grace_s)
    if not rows:
        return 0
    wanted = {row.name: DispatchConfig.from_stored(row.config, row.paused) for row in rows}
    held = await dispatcher.config_fields(list(wanted))
    repaired = 0
    for (name, config), fields in zip(wanted.items(), held, strict=True):
        if fields == config.to_fields():
            continue
        if not fields:  # lost with the rest of Redis: so were the starts of the current windows
            await _restore_rate_logs(conn, dispatcher, name, config)
        await dispatcher.configure(name, config)
        repaired += 1
        log.info("queue %s: dispatch controls re-applied to redis", name)
    return repaired


async def _restore_rate_logs(
    conn: asyncpg.Connection, dispatcher: Dispatcher, queue: str, config: DispatchConfig
) -> None:
    periods = [limit.period_ms for limit in (config.rate_limit, config.key_rate_limit) if limit is not None]
    if not periods:
        return
    # Within the longer period of the two: pop.lua trims what is older than its own window.
    starts = await store.recent_starts(conn, queue, max(periods))
    queue_starts = [(f"{s.job_id}:{s.attempt}", s.started_ms) for s in starts] if config.rate_limit else []
    key_starts = [
        (s.rate_limit_key, f"{s.job_id}:{s.attempt}", s.started_ms) for s in starts
        if config.key_rate_limit is not None and s.rate_limit_key is not None
    ]
    await dispatcher.restore_rate_log(queue, queue_starts, key_starts)
