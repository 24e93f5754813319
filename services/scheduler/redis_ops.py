"""Redis steps the scheduler takes after a commit: push with retries, forget stale copies."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from redis.exceptions import RedisError

from shared.dispatch.protocol import Dispatcher
from shared.models import JobSpec

log = logging.getLogger(__name__)

# Drop a job Redis holds for a row that is already terminal, unless a worker leases it.
# Unlike Dispatcher.cancel it sets no cancel flag: a flag would also drop a later manual
# retry of the same job. Kept here (not in shared/dispatch/scripts) because only the
# scheduler needs it; the key layout mirrors shared/dispatch/keys.py.
# KEYS: 1 job hash, 2 delayed zset, 3 leases zset; ARGV: 1 prefix, 2 job id
_FORGET_LUA = """
local queue = redis.call('HGET', KEYS[1], 'queue')
if not queue then return 0 end
if redis.call('ZSCORE', KEYS[3], ARGV[2]) then return 0 end
redis.call('ZREM', ARGV[1] .. ':q:' .. queue .. ':ready', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

TRANSIENT = (RedisError, OSError, TimeoutError)


class RedisSteps:
    """The post-commit Redis work of every scheduler transaction."""

    def __init__(self, dispatcher: Dispatcher, *, timeout_s: float, tries: int = 3) -> None:
        self.dispatcher = dispatcher
        self._timeout = timeout_s
        self._tries = tries
        self._forget = dispatcher.redis.register_script(_FORGET_LUA)

    async def push(self, specs: Sequence[tuple[JobSpec, int]]) -> bool:
        """Push after commit; retried briefly, then left to reconciliation (Postgres has the truth)."""
        if not specs:
            return True
        delay = 0.1
        for attempt in range(1, self._tries + 1):
            try:
                await asyncio.wait_for(self.dispatcher.push(specs), timeout=self._timeout)
                return True
            except TRANSIENT as exc:
                if attempt == self._tries:
                    log.error("redis push of %d jobs failed (%r); reconciliation will repair", len(specs), exc)
                    return False
                log.warning("redis push failed (%r), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay *= 4
        return False

    async def forget(self, job_ids: Sequence[uuid.UUID]) -> int:
        """Remove waiting copies of jobs whose rows are terminal; returns how many were removed."""
        if not job_ids:
            return 0
        keys = self.dispatcher.keys
        removed = 0
        try:
            async with self.dispatcher.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    await self._forget(
                        keys=[keys.job(job_id), keys.delayed, keys.leases],
                        args=[keys.prefix, str(job_id)],
                        client=pipe,
                    )
                results = await asyncio.wait_for(pipe.execute(), timeout=self._timeout)
            removed = sum(int(r) for r in results)
        except TRANSIENT as exc:
            log.warning("could not forget %d stale redis jobs: %r", len(job_ids), exc)
        if removed:
            log.info("forgot %d redis jobs whose rows are already terminal", removed)
        return removed
