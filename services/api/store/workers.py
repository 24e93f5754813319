"""The worker registry the workers keep in Redis (shared.dispatch keys), read-only (ADR 0001).

Each worker refreshes, every lease/3, its entry `worker(id)` (JSON, expiring after one lease) and
its last-heartbeat time in the zset `workers`. A worker whose entry is there is alive (`active`, or
`draining` once it stops); one whose entry expired but whose zset member remains stopped
heartbeating (killed, frozen, cut off) and is listed `gone` for GONE_LISTED_MS after its last
heartbeat, with what the zset still knows. A clean stop removes both, so that worker leaves the list.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.exceptions import RedisError

from services.api.http.problems import ServiceUnavailable
from shared.dispatch.keys import GONE_LISTED_MS
from shared.dispatch.protocol import Dispatcher

REDIS_CALL_TIMEOUT_S = 2.0
# How long a worker that stopped heartbeating stays listed as `gone` (long enough to be noticed on
# the dashboard); the zset keeps it longer, the list leaves it out.
# A worker serving every queue, including those created after it started.
ALL_QUEUES = "*"
STATUS_OF_ENTRY = {"running": "active", "draining": "draining"}


@dataclass(frozen=True, slots=True)
class Seen:
    """A zset member: a worker id and its last heartbeat (ms since the epoch, the worker's clock)."""

    worker_id: str
    heartbeat_ms: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def worker_item(seen: Seen, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One item of GET /workers from a zset member and its entry (None once the entry expired: `gone`)."""
    if entry is None:
        return {
            "workerId": seen.worker_id, "host": None, "pid": None, "queues": [], "concurrency": None,
            "running": [], "status": "gone", "startedAt": None, "lastHeartbeatAt": _at(seen.heartbeat_ms),
        }
    return {
        "workerId": seen.worker_id,
        "host": entry.get("hostname"),
        "pid": entry.get("pid"),
        "queues": [ALL_QUEUES] if entry.get("allQueues") else list(entry.get("queues") or []),
        "concurrency": entry.get("concurrency"),
        "running": list(entry.get("jobIds") or []),
        "status": STATUS_OF_ENTRY.get(str(entry.get("status")), "active"),
        "startedAt": entry.get("startedAt"),
        "lastHeartbeatAt": _at(seen.heartbeat_ms),
    }


async def _read(dispatcher: Dispatcher) -> list[dict[str, Any]]:
    keys, redis = dispatcher.keys, dispatcher.redis
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        (seconds, micros), members = await pipe.execute()
    # Redis's clock decides how long ago is too long: one clock for every api replica.
    cutoff_ms = int(seconds) * 1000 + int(micros) // 1000 - GONE_LISTED_MS
    seen = sorted(
        (Seen(_text(member), int(score)) for member, score in members if score >= cutoff_ms),
        key=lambda s: s.worker_id,
    )
    if not seen:
        return []
    raw = await redis.mget([keys.worker(s.worker_id) for s in seen])
    return [worker_item(s, orjson.loads(doc) if doc is not None else None) for s, doc in zip(seen, raw, strict=True)]


async def list_workers(dispatcher: Dispatcher | None) -> list[dict[str, Any]]:
    """Every live worker and those gone within GONE_LISTED_MS, by id; 503 if Redis does not answer."""
    if dispatcher is None:
        raise ServiceUnavailable("the worker registry is not available")
    try:
        return await asyncio.wait_for(_read(dispatcher), timeout=REDIS_CALL_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable("the worker registry (Redis) did not answer; try again") from exc
