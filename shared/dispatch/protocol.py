"""The Redis dispatch protocol: push, reliable pop into leases, heartbeat, release, promote, cancel flags.

Redis holds only what is needed to hand work out; Postgres stays the truth. Every step on a
queue is one Lua script on that queue's keys (`scripts/`), so a crash never leaves half a move;
calls on several queues share one pipeline (one round trip). Who may call what is decided in
docs/adr/0001-dispatch-state-ownership.md: the scheduler pushes, promotes, forgets and takes
back dead leases; a worker pops, heartbeats and releases its own leases; the api raises and
clears cancel flags.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.dispatch.config import DispatchConfig
from shared.dispatch.keys import Keys, ready_base
from shared.dispatch.records import (
    Expired,
    Forget,
    JobRef,
    Lease,
    WaitingJob,
    by_queue,
    decode_spec,
    encode_spec,
    flat,
    now_ms,
    owned,
    share_out,
    text,
)
from shared.dispatch.scripts import QueueScripts
from shared.dispatch.waits import WaitState
from shared.models import JobSpec

__all__ = ["Dispatcher", "Expired", "Forget", "JobRef", "Lease", "connect", "encode_spec", "now_ms"]

CANCEL_FLAG_TTL_MS = 7 * 24 * 3600 * 1000
# Jobs per push script call: long enough to amortise the call, short enough not to stall Redis.
PUSH_CHUNK = 500
# Wake tokens kept at most: enough to wake every worker, never a backlog of its own.
WAKE_TOKENS_MAX = 64


class Dispatcher:
    """Typed access to the dispatch keys of one prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.scripts = QueueScripts(redis, self.keys)

    async def pipelined(self, fill: Callable[[Pipeline], None]) -> list[Any]:
        """One round trip of the commands `fill` queues (see QueueScripts.pipelined)."""
        return await self.scripts.pipelined(fill)

    async def _read_each(
        self, read: Callable[[Pipeline, str, list[str]], object], groups: dict[str, list[JobRef]]
    ) -> list[Any]:
        """One read command per queue (`read(pipe, queue, ids)`), all in one round trip."""

        def fill(pipe: Pipeline) -> None:
            for queue, group in groups.items():
                read(pipe, queue, [str(ref.job_id) for ref in group])

        return await self.pipelined(fill)

    # --- the scheduler's writes --------------------------------------------------------------

    async def push(
        self, specs: Sequence[tuple[JobSpec, int]], *, fresh: Collection[uuid.UUID] = frozenset()
    ) -> list[bool]:
        """Hand jobs to Redis, each ready now (run_at 0) or at run_at ms; True where placed.

        Attempt-fenced: a job held at an older attempt is replaced, one held at the same or a
        newer attempt is left alone; but for the `fresh` ones (dispatched from pending: Postgres
        says no copy is due) a waiting copy at the same attempt is stale and replaced too. One
        round trip: the script calls (one per queue chunk), the queue names, a wake token per
        ready job.
        """
        if not specs:
            return []
        calls: list[tuple[str, list[int]]] = []
        for queue, indices in by_queue(range(len(specs)), lambda i: specs[i][0].queue).items():
            calls += [(queue, indices[i:i + PUSH_CHUNK]) for i in range(0, len(indices), PUSH_CHUNK)]
        ready = sum(1 for _, run_at in specs if run_at <= 0)
        tokens = min(ready, WAKE_TOKENS_MAX)

        def fill(pipe: Pipeline) -> None:
            for queue, chunk in calls:
                args: list[Any] = []
                for i in chunk:
                    spec, run_at = specs[i]
                    args += [
                        str(spec.job_id), encode_spec(spec), spec.attempt, ready_base(spec.priority), run_at,
                        int(spec.job_id in fresh),
                    ]
                self.scripts.add(pipe, "push", queue, args)
            pipe.sadd(self.keys.queues, *{queue for queue, _ in calls})
            if tokens:
                pipe.lpush(self.keys.wake, *["1"] * tokens)
                pipe.ltrim(self.keys.wake, 0, WAKE_TOKENS_MAX - 1)

        results = await self.pipelined(fill)
        placed = [False] * len(specs)
        for (_, chunk), flags in zip(calls, results, strict=False):
            for i, flag in zip(chunk, flags, strict=True):
                placed[i] = bool(flag)
        # A job already held left no work behind its token: take those tokens back (rare: redeliveries).
        surplus = tokens - min(sum(1 for i, (_, run_at) in enumerate(specs) if run_at <= 0 and placed[i]), tokens)
        if surplus:
            await self.redis.ltrim(self.keys.wake, surplus, -1)
        return placed

    async def promote_due(self, queues: Sequence[str] | None = None, limit: int = 1000) -> list[JobSpec]:
        """Move due delayed jobs into their ready sets (every known queue by default); returns what moved."""
        names = await self.queues() if queues is None else list(queues)
        if not names:
            return []
        at = now_ms()
        results = await self.scripts.each("promote", ((q, [at, limit]) for q in names))
        moved = [decode_spec(spec, attempt) for raw in results for _, spec, attempt in flat(raw, 3)]
        if moved:
            await self._wake(len(moved))
        return moved

    async def expired(self, queues: Sequence[str] | None = None, limit: int = 1000) -> list[Expired]:
        """Leases whose deadline passed (every known queue by default); read only."""
        names = await self.queues() if queues is None else list(queues)
        if not names:
            return []
        at = now_ms()
        results = await self.scripts.each("expired", ((q, [at, limit]) for q in names))
        return [
            Expired(decode_spec(spec, attempt), text(token))
            for raw in results for _, spec, attempt, token in flat(raw, 4)
        ]

    async def forget(self, items: Sequence[Forget]) -> int:
        """Drop waiting (not leased) copies up to each item's attempt; returns how many were dropped."""
        groups = by_queue(items, lambda item: item.queue)
        calls = ((q, [x for item in g for x in (str(item.job_id), item.up_to_attempt)]) for q, g in groups.items())
        return sum(int(n) for n in await self.scripts.each("forget", calls))

    # --- a worker's leases (the scheduler also releases dead ones) ---------------------------

    async def pop(self, queues: Sequence[str], count: int, lease_ms: int, token_base: str) -> list[Lease]:
        """Lease up to `count` jobs: best priority first across `queues`, strictly FIFO within a priority of one.

        One queue: one round trip. Several: one pipelined peek at the heads of every ready set,
        then one pipeline popping from the best ones (never a round trip per empty queue).
        """
        if not queues or count <= 0:
            return []
        plan = [(queues[0], count)] if len(queues) == 1 else await self._share(queues, count)
        if not plan:
            return []
        deadline, at = now_ms() + lease_ms, now_ms()
        if len(plan) == 1:
            queue, n = plan[0]
            results = [await self.scripts.call("pop", queue, [n, deadline, token_base, at])]
        else:
            # The tokens of the jobs we expect to take go in the same round trip; an estimate
            # (another worker may win some), and tokens are only a hint.
            expected = sum(n for _, n in plan)

            def fill(pipe: Pipeline) -> None:
                for i, (queue, n) in enumerate(plan):
                    self.scripts.add(pipe, "pop", queue, [n, deadline, f"{token_base}.{i}", at])
                if expected > 1:
                    pipe.ltrim(self.keys.wake, expected - 1, -1)

            results = (await self.pipelined(fill))[:len(plan)]
        leases = [
            Lease(decode_spec(spec, attempt), text(token))
            for raw in results for _, spec, attempt, token in flat(raw, 4)
        ]
        if len(plan) > 1:
            # Queue by queue as popped; merged best priority first (a stable sort keeps each queue's order).
            leases.sort(key=lambda lease: -lease.spec.priority)
        elif len(leases) > 1:
            # Every ready job left one wake token; the caller consumed one to get here, so taking
            # n jobs drops n - 1 more (else each would wake a worker, now or later, to find nothing).
            await self.redis.ltrim(self.keys.wake, len(leases) - 1, -1)
        return leases

    async def _share(self, queues: Sequence[str], count: int) -> list[tuple[str, int]]:
        """How many to pop from which queue, from one pipelined peek at every ready set's head."""

        def peek(pipe: Pipeline) -> None:
            for queue in queues:
                pipe.zrange(self.keys.queue(queue).ready, 0, count - 1, withscores=True)

        heads = await self.pipelined(peek)
        return share_out(queues, [[score for _, score in head] for head in heads], count)

    async def wait_for_work(self, timeout_s: float) -> None:
        """Block until a push or promotion signals new work, or the timeout passes."""
        await self.redis.blpop([self.keys.wake], timeout=timeout_s)

    async def heartbeat(self, leases: Iterable[Lease], lease_ms: int) -> set[uuid.UUID]:
        """Extend leases; returns the ids this worker no longer owns."""
        deadline = now_ms() + lease_ms
        calls = ((q, [deadline, *owned(g)]) for q, g in by_queue(leases, lambda lease: lease.spec.queue).items())
        return {uuid.UUID(text(x)) for lost in await self.scripts.each("heartbeat", calls) for x in lost}

    async def release(self, leases: Iterable[Lease]) -> int:
        """Give back leases (finished attempts, or dead ones) and forget their jobs; returns how many were owned."""
        calls = ((q, owned(g)) for q, g in by_queue(leases, lambda lease: lease.spec.queue).items())
        return sum(int(n) for n in await self.scripts.each("release", calls))

    async def release_each(self, leases: Sequence[Lease]) -> list[bool]:
        """Release leases one script call each, in one round trip; True where the token still owned it."""
        results = await self.scripts.each("release", ((lease.spec.queue, owned([lease])) for lease in leases))
        return [bool(int(n)) for n in results]

    # --- cancel flags (the api's) ------------------------------------------------------------

    async def cancel(self, queue: str, job_id: uuid.UUID) -> str:
        """Raise a job's cancel flag; says where its copy is: 'waiting', 'running' or 'absent'."""
        where = await self.scripts.call("cancel", queue, [str(job_id), now_ms() + CANCEL_FLAG_TTL_MS])
        return text(where)

    async def clear_cancel(self, queue: str, job_id: uuid.UUID) -> None:
        """Lower a job's cancel flag (before a manual retry runs it again)."""
        await self.redis.zrem(self.keys.queue(queue).cancelled, str(job_id))

    async def cancelled(self, refs: Iterable[JobRef]) -> set[uuid.UUID]:
        """Which of these jobs carry a live cancel flag."""
        groups = by_queue(refs, lambda ref: ref.queue)
        if not groups:
            return set()
        at = now_ms()
        flags = await self._read_each(lambda pipe, q, ids: pipe.zmscore(self.keys.queue(q).cancelled, ids), groups)
        return {
            ref.job_id
            for group, scores in zip(groups.values(), flags, strict=True)
            for ref, score in zip(group, scores, strict=True) if score is not None and score > at
        }

    # --- the api's writes: a queue's controls ------------------------------------------------

    async def configure(self, queue: str, config: DispatchConfig) -> None:
        """Replace a queue's dispatch controls at once (one MULTI: pop.lua never sees half of them).

        A resume wakes the workers, so a backlog held by the pause starts without waiting for a poll.
        """
        key = self.keys.queue(queue).config
        fields = config.to_fields()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.sadd(self.keys.queues, queue)
            pipe.lpush(self.keys.wake, *["1"] * WAKE_TOKENS_MAX)
            pipe.ltrim(self.keys.wake, 0, WAKE_TOKENS_MAX - 1)
            await pipe.execute()

    async def dispatch_config(self, queue: str) -> DispatchConfig:
        """The controls pop.lua obeys for a queue right now."""
        return DispatchConfig.from_fields(await self.redis.hgetall(self.keys.queue(queue).config))

    # --- reads -------------------------------------------------------------------------------

    async def wait_states(self, jobs: Sequence[WaitingJob]) -> dict[uuid.UUID, WaitState]:
        """What holds each waiting job back right now: pause, a full limit, or the jobs ahead of it.

        Reads only, one round trip. A limit is reported only when pop.lua would refuse the job's
        next start at this instant, so `rate_limited` or `concurrency_limited` is always true.
        """
        groups = by_queue(jobs, lambda job: job.queue)
        if not groups:
            return {}

        def fill(pipe: Pipeline) -> None:
            for queue, group in groups.items():
                keys = self.keys.queue(queue)
                pipe.hget(keys.config, "paused")
                for job in group:
                    pipe.zrank(keys.ready, str(job.job_id))

        raw = await self.pipelined(fill)
        out: dict[uuid.UUID, WaitState] = {}
        at = 0
        for group in groups.values():
            paused = raw[at] is not None
            at += 1
            for job in group:
                rank = raw[at]
                at += 1
                out[job.job_id] = WaitState(paused=paused, ready=rank is not None, ahead=rank)
        return out

    async def held(self, refs: Iterable[JobRef]) -> set[uuid.UUID]:
        """Which of these jobs Redis would still hand out or holds leased: a copy flagged cancelled counts as gone."""
        groups = by_queue(refs, lambda ref: ref.queue)
        if not groups:
            return set()

        def read(pipe: Pipeline, queue: str, ids: list[str]) -> None:
            pipe.hmget(self.keys.queue(queue).state, ids)
            pipe.zmscore(self.keys.queue(queue).cancelled, ids)

        results = await self._read_each(read, groups)
        at = now_ms()
        found: set[uuid.UUID] = set()
        for n, group in enumerate(groups.values()):
            states, flags = results[2 * n], results[2 * n + 1]
            for ref, state, flag in zip(group, states, flags, strict=True):
                if state is not None and not (flag is not None and flag > at):
                    found.add(ref.job_id)
        return found

    async def leased(self, refs: Iterable[JobRef]) -> set[uuid.UUID]:
        """Which of these jobs are under a lease right now."""
        groups = by_queue(refs, lambda ref: ref.queue)
        if not groups:
            return set()
        scores = await self._read_each(lambda pipe, q, ids: pipe.zmscore(self.keys.queue(q).leases, ids), groups)
        return {
            ref.job_id
            for group, found in zip(groups.values(), scores, strict=True)
            for ref, score in zip(group, found, strict=True) if score is not None
        }

    async def queues(self) -> list[str]:
        """Every queue that has ever had a job pushed."""
        return sorted(text(n) for n in await self.redis.smembers(self.keys.queues))

    async def depth(self, queue: str) -> int:
        """Jobs waiting in a queue's ready set."""
        return int(await self.redis.zcard(self.keys.queue(queue).ready))

    async def _wake(self, jobs: int) -> None:
        """One wake token per job made ready (at most WAKE_TOKENS_MAX kept)."""

        def fill(pipe: Pipeline) -> None:
            pipe.lpush(self.keys.wake, *["1"] * min(jobs, WAKE_TOKENS_MAX))
            pipe.ltrim(self.keys.wake, 0, WAKE_TOKENS_MAX - 1)

        await self.pipelined(fill)


def connect(url: str, *, timeout_s: float = 5.0, max_connections: int = 64) -> Redis:
    """A client with timeouts on every call; BLPOP callers pass their own, shorter, wait."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s + 5,
        socket_connect_timeout=timeout_s,
        max_connections=max_connections,
        health_check_interval=30,
    )
