"""The Redis dispatch protocol: push, reliable pop into leases, heartbeat, ack, retry, requeue.

Redis holds only what is needed to hand work out; Postgres stays the truth. Every
multi-key step is one Lua script (see `scripts/`), so a crash never leaves half a move.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shared.dispatch.keys import Keys
from shared.models import JobSpec

CANCEL_FLAG_TTL_S = 7 * 24 * 3600


def now_ms() -> int:
    """Wall-clock milliseconds: lease deadlines and run-at times are shared across hosts."""
    return int(time.time() * 1000)


def _script(name: str) -> str:
    return resources.files("shared.dispatch").joinpath("scripts", f"{name}.lua").read_text()


@dataclass(frozen=True)
class Lease:
    """A job a worker holds: the spec of this attempt and the token proving ownership."""

    spec: JobSpec
    token: str

    @property
    def job_id(self) -> uuid.UUID:
        return self.spec.job_id


@dataclass(frozen=True)
class Expired:
    """A lease that ran out: `outcome` is 'retry' (next attempt queued) or 'exhausted'."""

    spec: JobSpec
    outcome: str


def _spec(raw: bytes | str, attempt: bytes | str | int) -> JobSpec:
    spec = JobSpec.model_validate_json(raw)
    return spec.model_copy(update={"attempt": int(attempt)})


def encode_spec(spec: JobSpec) -> str:
    """The spec as stored in Redis (the attempt lives beside it, in its own field)."""
    return spec.model_dump_json(by_alias=True)


PUSH_CHUNK = 500


class Dispatcher:
    """Typed access to the dispatch keys of one prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_script(name))
            for name in (
                "push", "pop", "heartbeat", "ack", "retry", "promote", "requeue_expired", "cancel",
            )
        }

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args), client=client)

    async def push(self, specs: Sequence[tuple[JobSpec, int]]) -> list[bool]:
        """Hand jobs to Redis, each ready now (run_at 0) or at run_at ms; True where new."""
        if not specs:
            return []
        k = self.keys
        results: list[bool] = []
        # One script call per chunk rather than a pipeline of one call per job: the client's
        # cost is per command, and a chunk stays short enough not to stall Redis.
        for start in range(0, len(specs), PUSH_CHUNK):
            args: list[Any] = [k.prefix]
            for spec, run_at in specs[start:start + PUSH_CHUNK]:
                args += [str(spec.job_id), encode_spec(spec), spec.attempt, spec.max_attempts,
                         spec.queue, spec.priority, run_at]
            pushed = await self._run("push", [k.seq, k.queues, k.wake, k.delayed], args)
            results += [bool(r) for r in pushed]
        return results

    async def pop(
        self, queues: Sequence[str], count: int, lease_ms: int, token_base: str
    ) -> list[Lease]:
        """Lease up to `count` jobs, best priority first across `queues`, FIFO within one."""
        if not queues or count <= 0:
            return []
        k = self.keys
        raw = await self._run(
            "pop",
            [k.leases, k.lease_owner, k.wake, *(k.ready(q) for q in queues)],
            [k.prefix, count, now_ms() + lease_ms, token_base],
        )
        out = []
        for i in range(0, len(raw), 4):
            token = raw[i + 3]
            out.append(Lease(_spec(raw[i + 1], raw[i + 2]), token.decode() if isinstance(token, bytes) else token))
        return out

    async def wait_for_work(self, timeout_s: float) -> None:
        """Block until a push or promotion signals new work, or the timeout passes."""
        await self.redis.blpop([self.keys.wake], timeout=timeout_s)

    async def heartbeat(self, leases: Iterable[Lease], lease_ms: int) -> set[uuid.UUID]:
        """Extend leases; returns the ids this worker no longer owns."""
        args: list[Any] = [now_ms() + lease_ms]
        for lease in leases:
            args += [str(lease.job_id), lease.token]
        if len(args) == 1:
            return set()
        lost = await self._run("heartbeat", [self.keys.leases, self.keys.lease_owner], args)
        return {uuid.UUID(x.decode() if isinstance(x, bytes) else x) for x in lost}

    async def ack(self, leases: Iterable[Lease]) -> int:
        """Release and forget finished jobs; returns how many were still owned."""
        args: list[Any] = [self.keys.prefix]
        for lease in leases:
            args += [str(lease.job_id), lease.token]
        if len(args) == 1:
            return 0
        return int(await self._run("ack", [self.keys.leases, self.keys.lease_owner], args))

    async def retry_later(self, lease: Lease, run_at_ms: int) -> bool:
        """Move a failed attempt to the delayed set as the next attempt; False if not owned."""
        k = self.keys
        done = await self._run(
            "retry",
            [k.leases, k.lease_owner, k.delayed, k.job(lease.job_id)],
            [str(lease.job_id), lease.token, lease.spec.attempt + 1, run_at_ms],
        )
        return bool(done)

    async def promote_due(self, limit: int = 1000) -> list[JobSpec]:
        """Move due delayed jobs into their ready sets; returns what moved."""
        k = self.keys
        raw = await self._run("promote", [k.delayed, k.seq, k.wake], [k.prefix, now_ms(), limit])
        return [_spec(raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]

    async def requeue_expired(self, limit: int = 1000) -> list[Expired]:
        """Take back expired leases; a job with attempts left is due again at once."""
        k = self.keys
        raw = await self._run(
            "requeue_expired", [k.leases, k.lease_owner, k.delayed], [k.prefix, now_ms(), limit]
        )
        out = []
        for i in range(0, len(raw), 4):
            outcome = raw[i + 3]
            out.append(Expired(
                _spec(raw[i + 1], raw[i + 2]),
                outcome.decode() if isinstance(outcome, bytes) else outcome,
            ))
        return out

    async def cancel(self, job_id: uuid.UUID) -> str:
        """Flag a job cancelled and drop it if waiting: 'removed', 'running' or 'absent'."""
        k = self.keys
        result = await self._run(
            "cancel",
            [k.job(job_id), k.cancel(job_id), k.delayed, k.leases],
            [k.prefix, str(job_id), CANCEL_FLAG_TTL_S],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def cancelled(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these jobs carry a cancel flag."""
        if not job_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self.keys.cancel(job_id))
            flags = await pipe.execute()
        return {job_id for job_id, flag in zip(job_ids, flags, strict=True) if flag}

    async def held(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these jobs Redis holds (ready, delayed or leased)."""
        if not job_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self.keys.job(job_id))
            found = await pipe.execute()
        return {job_id for job_id, hit in zip(job_ids, found, strict=True) if hit}

    async def leased(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these jobs are under a lease right now."""
        if not job_ids:
            return set()
        scores = await self.redis.zmscore(self.keys.leases, [str(j) for j in job_ids])
        return {job_id for job_id, s in zip(job_ids, scores, strict=True) if s is not None}

    async def queues(self) -> list[str]:
        """Every queue that has ever had a job pushed."""
        names = await self.redis.smembers(self.keys.queues)
        return sorted(n.decode() if isinstance(n, bytes) else n for n in names)

    async def depth(self, queue: str) -> int:
        """Jobs waiting in a queue's ready set."""
        return int(await self.redis.zcard(self.keys.ready(queue)))


def connect(url: str, *, timeout_s: float = 5.0, max_connections: int = 64) -> Redis:
    """A client with timeouts on every call; BLPOP callers pass their own, shorter, wait."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s + 5,
        socket_connect_timeout=timeout_s,
        max_connections=max_connections,
        health_check_interval=30,
    )
