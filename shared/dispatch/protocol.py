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
from shared.dispatch.keys import PRIORITY_SHIFT, Keys, ready_base
from shared.dispatch.records import (
    Expired,
    Forget,
    JobRef,
    Lease,
    Taken,
    WaitingJob,
    by_queue,
    decode_spec,
    encode_spec,
    flat,
    lane_aware_scores,
    now_ms,
    owned,
    packed_keys,
    share_out,
    text,
)
from shared.dispatch.scripts import QueueScripts
from shared.dispatch.waits import WaitState, wait_args, wait_states_of
from shared.models import JobSpec

__all__ = ["Dispatcher", "Expired", "Forget", "JobRef", "Lease", "Taken", "connect", "encode_spec", "now_ms"]

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
                args: list[Any] = [PRIORITY_SHIFT]
                for i in chunk:
                    spec, run_at = specs[i]
                    args += [
                        str(spec.job_id), encode_spec(spec), spec.attempt, ready_base(spec.priority), run_at,
                        int(spec.job_id in fresh), packed_keys(spec),
                    ]
                self.scripts.add(pipe, "push", queue, args)
            pipe.sadd(self.keys.queues, *{queue for queue, _ in calls})
            if tokens:
                pipe.lpush(self.keys.wake, *["1"] * tokens)
                pipe.ltrim(self.keys.wake, 0, WAKE_TOKENS_MAX - 1)

        results = await self.pipelined(fill)
        placed = [False] * len(specs)
        startable = [False] * len(specs)  # placed ready, in a queue that is not paused
        for (_, chunk), flags in zip(calls, results, strict=False):
            paused = bool(flags[-1])
            for i, flag in zip(chunk, flags[:-1], strict=True):
                placed[i] = bool(flag)
                startable[i] = placed[i] and not paused and specs[i][1] <= 0
        # A job already held, or one in a paused queue, leaves no work behind its token: take those
        # tokens back (else workers would wake for nothing, again and again while a queue is paused).
        surplus = tokens - min(sum(startable), tokens)
        if surplus:
            await self.redis.ltrim(self.keys.wake, surplus, -1)
        return placed

    async def promote_due(self, queues: Sequence[str] | None = None, limit: int = 1000) -> list[JobSpec]:
        """Move due delayed jobs into their ready sets (every known queue by default); returns what moved."""
        names = await self.queues() if queues is None else list(queues)
        if not names:
            return []
        results = await self.scripts.each("promote", ((q, [limit, PRIORITY_SHIFT]) for q in names))
        moved = [decode_spec(spec, attempt) for raw in results for _, spec, attempt in flat(raw, 3)]
        if moved:
            await self._wake(len(moved))
        return moved

    async def expired(self, queues: Sequence[str] | None = None, limit: int = 1000) -> list[Expired]:
        """Leases whose deadline passed (every known queue by default); read only."""
        names = await self.queues() if queues is None else list(queues)
        if not names:
            return []
        results = await self.scripts.each("expired", ((q, [limit]) for q in names))
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
        """Lease up to `count` jobs (see take)."""
        return (await self.take(queues, count, lease_ms, token_base)).leases

    async def take(self, queues: Sequence[str], count: int, lease_ms: int, token_base: str) -> Taken:
        """Lease up to `count` jobs: best priority first across `queues`, strictly FIFO within a priority
        of one, within each queue's controls (pop.lua); says how long held-back work cannot start.

        One queue: one round trip. Several: one pipelined peek at the heads of every ready set (and
        their pause flags), then one pipeline popping from the best ones (never a round trip per
        empty queue); when limits left slots unused, one more pass over the other queues.
        """
        if not queues or count <= 0:
            return Taken([])
        if len(queues) == 1:
            taken, _ = await self._take([(queues[0], count)], lease_ms, token_base)
            return taken
        taken, held_back = await self._take(await self._share(queues, count), lease_ms, token_base)
        short = count - len(taken.leases)
        if short > 0 and held_back:
            # A limit held some share back: offer the slots to the queues that did not come up short.
            tried = {lease.spec.queue for lease in taken.leases} | set(held_back)
            rest = [q for q in queues if q not in tried]
            if rest:
                more, _ = await self._take(await self._share(rest, short), lease_ms, f"{token_base}+")
                merged = sorted([*taken.leases, *more.leases], key=lambda lease: -lease.spec.priority)
                return Taken(merged, _sooner(taken.wait_ms, more.wait_ms))
        return taken

    async def _take(self, plan: list[tuple[str, int]], lease_ms: int, token_base: str) -> tuple[Taken, list[str]]:
        """Pop by plan; also says which queues a limit or pause held back."""
        held_back: list[str] = []
        if not plan:
            return Taken([]), held_back
        if len(plan) == 1:
            queue, n = plan[0]
            results = [await self.scripts.call("pop", queue, [n, lease_ms, token_base, PRIORITY_SHIFT])]
        else:
            # The tokens of the jobs we expect to take go in the same round trip; an estimate
            # (another worker may win some), and tokens are only a hint.
            expected = sum(n for _, n in plan)

            def fill(pipe: Pipeline) -> None:
                for i, (queue, n) in enumerate(plan):
                    self.scripts.add(pipe, "pop", queue, [n, lease_ms, f"{token_base}.{i}", PRIORITY_SHIFT])
                if expected > 1:
                    pipe.ltrim(self.keys.wake, expected - 1, -1)

            results = (await self.pipelined(fill))[:len(plan)]
        wait = 0
        leases: list[Lease] = []
        for (queue, n), raw in zip(plan, results, strict=True):
            at = int(raw[1])
            got = [Lease(decode_spec(spec, attempt), text(token), at) for _, spec, attempt, token in flat(raw[2:], 4)]
            if len(got) < n and int(raw[0]) != 0:
                wait = _sooner(wait, int(raw[0]))
                held_back.append(queue)
            leases += got
        if len(plan) > 1:
            # Queue by queue as popped; merged best priority first (a stable sort keeps each queue's order).
            leases.sort(key=lambda lease: -lease.spec.priority)
        elif len(leases) > 1:
            # Every ready job left one wake token; the caller consumed one to get here, so taking
            # n jobs drops n - 1 more (else each would wake a worker, now or later, to find nothing).
            await self.redis.ltrim(self.keys.wake, len(leases) - 1, -1)
        return Taken(leases, wait), held_back

    async def _share(self, queues: Sequence[str], count: int) -> list[tuple[str, int]]:
        """How many to pop from which queue, from one pipelined peek at every ready set's head."""

        def peek(pipe: Pipeline) -> None:
            for queue in queues:
                pipe.zrange(self.keys.queue(queue).ready, 0, count - 1, withscores=True)
                pipe.hexists(self.keys.queue(queue).config, "paused")

        raw = await self.pipelined(peek)
        # A paused queue's backlog must not take the shares of queues that can start work.
        heads = [
            [] if paused else lane_aware_scores(head, count)
            for head, paused in zip(raw[::2], raw[1::2], strict=True)
        ]
        return share_out(queues, heads, count)

    async def wait_for_work(self, timeout_s: float) -> None:
        """Block until a push or promotion signals new work, or the timeout passes."""
        await self.redis.blpop([self.keys.wake], timeout=timeout_s)

    async def heartbeat(self, leases: Iterable[Lease], lease_ms: int) -> set[uuid.UUID]:
        """Extend leases to Redis TIME + lease_ms; returns the ids this worker no longer owns."""
        calls = ((q, [lease_ms, *owned(g)]) for q, g in by_queue(leases, lambda lease: lease.spec.queue).items())
        return {uuid.UUID(text(x)) for lost in await self.scripts.each("heartbeat", calls) for x in lost}

    async def release(self, leases: Iterable[Lease]) -> int:
        """Give back leases (finished attempts, or dead ones) and forget their jobs; returns how many were owned."""
        calls = ((q, owned(g)) for q, g in by_queue(leases, lambda lease: lease.spec.queue).items())
        results = await self.scripts.each("release", calls)
        freed = sum(int(slots) for _, slots in results)
        if freed:
            await self._wake(freed)  # a concurrency slot came free: whoever waits on it may start now
        return sum(int(done) for done, _ in results)

    async def release_each(self, leases: Sequence[Lease]) -> list[bool]:
        """Release leases one script call each, in one round trip; True where the token still owned it."""
        results = await self.scripts.each("release", ((lease.spec.queue, owned([lease])) for lease in leases))
        freed = sum(int(slots) for _, slots in results)
        if freed:
            await self._wake(freed)
        return [bool(int(done)) for done, _ in results]

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

    async def config_fields(self, queues: Sequence[str]) -> list[dict[str, str]]:
        """The raw config hashes of several queues (one round trip): what the reconciler compares."""

        def fill(pipe: Pipeline) -> None:
            for queue in queues:
                pipe.hgetall(self.keys.queue(queue).config)

        return [{text(k): text(v) for k, v in raw.items()} for raw in await self.pipelined(fill)]

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
        results = await self.scripts.each("waits", ((q, wait_args(g)) for q, g in groups.items()))
        out: dict[uuid.UUID, WaitState] = {}
        for group, raw in zip(groups.values(), results, strict=True):
            out.update(wait_states_of(group, raw))
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
        """Jobs waiting in a queue's dispatch order (ready or in their lane): held, neither delayed nor leased."""
        keys = self.keys.queue(queue)

        def fill(pipe: Pipeline) -> None:
            pipe.hlen(keys.state)
            pipe.zcard(keys.delayed)
            pipe.zcard(keys.leases)

        held, delayed, leased = await self.pipelined(fill)
        return max(0, int(held) - int(delayed) - int(leased))

    async def age_due(self, queues: Sequence[str] | None = None, limit: int = 1000) -> int:
        """Move up the waiting jobs whose aging step is due (queues with `age`); returns how many moved."""
        names = await self.queues() if queues is None else list(queues)
        results = await self.scripts.each("age", ((q, [limit, PRIORITY_SHIFT]) for q in names))
        return sum(int(n) for n in results)

    async def restore_rate_log(
        self, queue: str, queue_starts: Sequence[tuple[str, int]], key_starts: Sequence[tuple[str, str, int]]
    ) -> None:
        """Put back starts Redis lost (from Postgres): (attempt id, ms) into the queue's log, (key, attempt
        id, ms) into the key log; an entry already there is not added twice."""
        keys = self.keys.queue(queue)

        def fill(pipe: Pipeline) -> None:
            if queue_starts:
                pipe.zadd(keys.rlog, {f"r:{name}": ms for name, ms in queue_starts}, nx=True)
            if key_starts:
                pipe.zadd(keys.krlog, {f"{key}\0{ms:013d}\0r:{name}": 0 for key, name, ms in key_starts}, nx=True)

        if queue_starts or key_starts:
            await self.pipelined(fill)

    async def _wake(self, jobs: int) -> None:
        """One wake token per job made ready (at most WAKE_TOKENS_MAX kept)."""

        def fill(pipe: Pipeline) -> None:
            pipe.lpush(self.keys.wake, *["1"] * min(jobs, WAKE_TOKENS_MAX))
            pipe.ltrim(self.keys.wake, 0, WAKE_TOKENS_MAX - 1)

        await self.pipelined(fill)


def _sooner(a: int, b: int) -> int:
    """The more urgent of two pop wait hints (a positive wait beats 'wait for a wake')."""
    if a == 0 or (b > 0 and (a < 0 or b < a)):
        return b
    return a


def connect(url: str, *, timeout_s: float = 5.0, max_connections: int = 64) -> Redis:
    """A client with timeouts on every call; BLPOP callers pass their own, shorter, wait."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s + 5,
        socket_connect_timeout=timeout_s,
        max_connections=max_connections,
        health_check_interval=30,
    )
