"""Which retry policy applies to a job: its own > its job type's > its queue's > RetryPolicy().

The job type's default comes from the worker (`WORKER_RETRY_DEFAULTS`, then `@handler(...,
retry=...)`); the queue's from the `retry` field of the queue's Redis config hash, read only when
a retryable failure of a job without a policy of its own needs a delay, and cached briefly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from shared.dispatch.config import DispatchConfig
from shared.models import JobSpec, RetryPolicy

log = logging.getLogger(__name__)

# A queue's default changes rarely (PUT /queues); a few seconds of staleness is harmless and
# keeps a burst of failures from reading the same hash once per job.
QUEUE_CACHE_S = 5.0
READ_TIMEOUT_S = 2.0

ReadConfig = Callable[[str], Awaitable[DispatchConfig]]


def parse_type_defaults(raw: Mapping[str, Any]) -> dict[str, RetryPolicy]:
    """`WORKER_RETRY_DEFAULTS` as policies; raises ValueError naming the job type of a bad one."""
    out: dict[str, RetryPolicy] = {}
    for job_type, policy in raw.items():
        try:
            out[job_type] = RetryPolicy.model_validate(policy)
        except ValidationError as exc:
            raise ValueError(f"WORKER_RETRY_DEFAULTS[{job_type!r}] is not a retry policy: {exc}") from exc
    return out


class RetryDefaults:
    """Resolves the policy of a failed job; the queue defaults it read are cached per queue."""

    def __init__(
        self,
        read_config: ReadConfig,
        by_type: Callable[[str], RetryPolicy | None],
        *,
        cache_s: float = QUEUE_CACHE_S,
    ) -> None:
        self._read_config = read_config
        self._by_type = by_type
        self._cache_s = cache_s
        self._queues: dict[str, tuple[float, RetryPolicy | None]] = {}
        self._reads: dict[str, asyncio.Future[RetryPolicy | None]] = {}

    async def policy_for(self, spec: JobSpec) -> RetryPolicy:
        """The policy that decides this job's next delay."""
        if spec.retry is not None:
            return spec.retry
        by_type = self._by_type(spec.job_type)
        if by_type is not None:
            return by_type
        return await self.queue_default(spec.queue) or RetryPolicy()

    async def queue_default(self, queue: str) -> RetryPolicy | None:
        """The queue's default policy (None: it has none, or it could not be read)."""
        cached = self._queues.get(queue)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        pending = self._reads.get(queue)
        if pending is None:
            # Jobs of one queue failing together share one read.
            pending = self._reads[queue] = asyncio.ensure_future(self._read(queue))
            pending.add_done_callback(lambda _: self._reads.pop(queue, None))
        return await asyncio.shield(pending)

    async def _read(self, queue: str) -> RetryPolicy | None:
        try:
            config = await asyncio.wait_for(self._read_config(queue), READ_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            # Not cached: the next failure tries again; this one falls back to RetryPolicy().
            log.warning("could not read the retry default of queue %r: %r", queue, exc)
            return None
        policy = None
        if config.retry_json is not None:
            try:
                policy = RetryPolicy.model_validate_json(config.retry_json)
            except ValidationError as exc:
                log.warning("queue %r has an invalid retry default, ignoring it: %s", queue, exc)
        self._queues[queue] = (time.monotonic() + self._cache_s, policy)
        return policy
