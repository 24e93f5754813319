"""Changing a queue (PUT, pause, resume) and reading it as the resource of DESIGN §5.

A change is written to Postgres (`queues`, the truth) and mirrored into the queue's Redis config
hash (what pop.lua obeys) while the row is locked, then committed; only then does the request
answer. If Redis does not answer, the transaction rolls back and the request answers 503: a 503
changed nothing (docs/adr/0005-queue-config.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from services.api.http.deps import ApiDeps
from services.api.http.problems import ServiceUnavailable
from services.api.queues.schemas import full_config
from services.api.store import queues as store
from services.api.store.connections import connection, transaction
from services.api.store.dispatch import REDIS_CALL_TIMEOUT_S
from shared.dispatch.config import DispatchConfig
from shared.models import JobStatus

STATUSES = [s.value for s in JobStatus]

Change = Callable[[store.QueueRow], tuple[dict[str, Any], bool]]


async def change_queue(deps: ApiDeps, name: str, change: Change) -> store.QueueRow:
    """Apply `change(row) -> (config, paused)` to the queue (created if new): Postgres and Redis, or neither."""
    async with transaction(deps.pool) as conn:
        row = await store.lock(conn, name)
        config, paused = change(row)
        row = await store.store(conn, name, config, paused)
        await _mirror(deps, row)
    deps.queue_rules.invalidate()  # this replica sees the change at once; the others hear the NOTIFY
    return row


async def _mirror(deps: ApiDeps, row: store.QueueRow) -> None:
    if deps.dispatcher is None:
        return
    try:
        await asyncio.wait_for(
            deps.dispatcher.configure(row.name, DispatchConfig.from_stored(row.config, row.paused)),
            timeout=REDIS_CALL_TIMEOUT_S,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable(
            "the dispatch store (Redis) did not answer; nothing was changed, try again",
            headers={"Retry-After": "1"},
        ) from exc


def queue_view(name: str, row: store.QueueRow | None, figures: asyncpg.Record | None) -> dict[str, Any]:
    """The queue resource: config (every key), pause flag, counts by status, oldest waiting age, throughput."""
    return {
        "name": name,
        "paused": row.paused if row is not None else False,
        "config": full_config(row.config if row is not None else {}),
        "counts": {s: (figures[s] if figures is not None else 0) for s in STATUSES},
        "oldestWaitingAgeMs": figures["oldest_waiting_age_ms"] if figures is not None else None,
        "throughputPerMin": figures["throughput_per_min"] if figures is not None else 0,
    }


async def read_queues(
    pool: asyncpg.Pool, tenant: str | None, name: str | None = None,
) -> list[dict[str, Any]]:
    """Queues that have a config or jobs (of `tenant`; of every tenant when None), by name; or just `name`."""
    async with connection(pool) as conn:
        if name is None:
            rows = {r.name: r for r in await store.all_rows(conn)}
        else:
            one = await store.get(conn, name)
            rows = {name: one} if one is not None else {}
        figures = await store.figures(conn, tenant, name)
    return [queue_view(n, rows.get(n), figures.get(n)) for n in sorted(set(rows) | set(figures))]
