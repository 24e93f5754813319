"""Workers that stopped heartbeating: `worker_stopped` (reason `gone`) once each, and pruning of long-gone ones.

A worker's registry entry expires unless refreshed (services/worker/heartbeat.py); its member in
the `workers` zset keeps the last heartbeat, so GET /workers lists it `gone` for GONE_LISTED_MS.
One scheduler replica sweeps at a time (a Redis lock). The announced ids are kept in a Redis set:
the event goes through the outbox first, then the id joins the set, so a crash in between announces
again with the same eventId (derived from the worker and its last heartbeat) and consumers can
drop it. A worker that comes back under the same id leaves the set, so its next death is announced.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.scheduler.txn import Committer
from shared import worker_events
from shared.dispatch.keys import GONE_LISTED_MS, Keys

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 2.0
EVENT_NAMESPACE = uuid.UUID("0f5d8a8e-3c1b-4e0f-9a57-6d2b7c9e4f10")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def gone_event_id(worker_id: str, last_heartbeat_ms: int) -> uuid.UUID:
    """The same id for every announcement of one disappearance."""
    return uuid.uuid5(EVENT_NAMESPACE, f"gone:{worker_id}:{last_heartbeat_ms}")


class WorkerSweep:
    """One sweep per tick, by whichever replica holds the lock."""

    def __init__(self, committer: Committer, redis: Redis, keys: Keys, *, interval_s: float = SWEEP_INTERVAL_S,
                 replica: str | None = None) -> None:
        self._committer = committer
        self._redis = redis
        self._keys = keys
        self._lock_ms = int(interval_s * 3000)
        self._replica = replica or uuid.uuid4().hex
        self.announced = 0  # gone workers this replica announced (tests, logs)
        self._one_at_a_time = asyncio.Lock()  # the loop and a direct call (tests) never sweep together

    async def tick(self) -> bool:
        """Announce newly gone workers and prune long-gone ones; never asks to run again at once."""
        async with self._one_at_a_time:
            if await self._hold_lock():
                await self._sweep()
        return False

    async def _sweep(self) -> None:
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(keys.workers, 0, -1, withscores=True)
            pipe.smembers(keys.workers_gone)
            (seconds, micros), members, announced_raw = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        seen = {_text(m): int(score) for m, score in members}
        announced = {_text(m) for m in announced_raw}
        ids = sorted(seen)
        alive = set()
        if ids:
            entries = await self._redis.mget([keys.worker(i) for i in ids])
            alive = {i for i, doc in zip(ids, entries, strict=True) if doc is not None}
        cutoff = now_ms - GONE_LISTED_MS
        fresh = [i for i in ids if i not in alive and i not in announced and seen[i] >= cutoff]
        back = announced & alive
        if fresh:
            await self._announce(fresh, seen, now_ms)
        await self._tidy(back, cutoff, {i for i in ids if seen[i] < cutoff and i not in alive})

    async def _hold_lock(self) -> bool:
        # Kept by the replica that has it (refreshed each tick); another takes over once it expires.
        lock = self._keys.workers_sweep
        if await self._redis.set(lock, self._replica, nx=True, px=self._lock_ms):
            return True
        holder = await self._redis.get(lock)
        if holder is not None and _text(holder) == self._replica:
            await self._redis.pexpire(lock, self._lock_ms)
            return True
        return False

    async def _announce(self, gone: list[str], seen: dict[str, int], now_ms: int) -> None:
        at = datetime.fromtimestamp(now_ms / 1000, UTC)
        docs = [
            worker_events.stopped(
                worker_id, worker_events.StopReason.GONE, at=at,
                last_heartbeat_at=datetime.fromtimestamp(seen[worker_id] / 1000, UTC),
                event_id=gone_event_id(worker_id, seen[worker_id]),
            )
            for worker_id in gone
        ]
        async with self._committer.transaction("workers") as (_, fx):
            fx.messages.extend(worker_events.message(doc) for doc in docs)
        await self._redis.sadd(self._keys.workers_gone, *gone)
        self.announced += len(gone)
        log.info("workers gone (stopped heartbeating): %s", ", ".join(gone))

    async def _tidy(self, back: set[str], cutoff_ms: int, pruned: set[str]) -> None:
        """Forget announcements of workers that came back, and registry members gone past the listing."""
        keys = self._keys
        if not back and not pruned:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.srem(keys.workers_gone, *(back | pruned))
            if pruned:
                # By score: a worker that heartbeat meanwhile has a newer score and stays.
                pipe.zremrangebyscore(keys.workers, "-inf", f"({cutoff_ms}")
            await pipe.execute()
        if pruned:
            log.info("pruned %d workers gone for over %d minutes", len(pruned), GONE_LISTED_MS // 60000)
