"""SQL of the queue mirror: the `queues` rows to re-apply to Redis, and the recent starts a rate log needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

# Rows unchanged for the grace period: a row the api has just written is mirrored by the api itself
# (it writes Redis before it answers), and must not be overwritten from an older read.
SETTLED_QUEUES = """
SELECT name, config, paused FROM queues
WHERE updated_at < now() - make_interval(secs => $1::float8)
ORDER BY name
"""
# Attempts of a queue started within the last `$2` ms, by Postgres' clock (start times come from the
# workers' `started` events). Only read after Redis lost a queue's mirror, for queues with a rate limit.
RECENT_STARTS = """
SELECT a.job_id, a.attempt, j.rate_limit_key,
       (extract(epoch FROM a.started_at) * 1000)::bigint AS started_ms
FROM job_attempts a JOIN jobs j ON j.id = a.job_id
WHERE j.queue = $1 AND a.started_at > now() - make_interval(secs => $2::float8 / 1000)
"""


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A `queues` row: its DESIGN §5 config JSON and its pause flag."""

    name: str
    config: dict[str, Any]
    paused: bool


@dataclass(frozen=True, slots=True)
class Start:
    """One attempt's start, as a rate log needs it."""

    job_id: uuid.UUID
    attempt: int
    rate_limit_key: str | None
    started_ms: int


async def settled_queues(conn: asyncpg.Connection, grace_s: float) -> list[QueueRow]:
    """Every queue row unchanged for `grace_s`."""
    return [
        QueueRow(r["name"], dict(r["config"] or {}), bool(r["paused"]))
        for r in await conn.fetch(SETTLED_QUEUES, grace_s)
    ]


async def recent_starts(conn: asyncpg.Connection, queue: str, within_ms: int) -> list[Start]:
    """The attempts of `queue` that started within the last `within_ms`."""
    return [
        Start(r["job_id"], r["attempt"], r["rate_limit_key"], int(r["started_ms"]))
        for r in await conn.fetch(RECENT_STARTS, queue, within_ms)
    ]
