"""The api's Redis calls (through the shared Dispatcher), each bounded by a timeout."""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.exceptions import RedisError

from services.api.http.problems import ServiceUnavailable
from shared.dispatch.protocol import Dispatcher
from shared.logs import job_fields

log = logging.getLogger(__name__)

REDIS_CALL_TIMEOUT_S = 2.0


async def cancel_in_redis(dispatcher: Dispatcher | None, queue: str, job_id: uuid.UUID) -> str | None:
    """Raise the job's cancel flag (its waiting copy is never handed out again); best effort (Postgres already
    says cancelled)."""
    if dispatcher is None:
        return None
    try:
        return await asyncio.wait_for(dispatcher.cancel(queue, job_id), timeout=REDIS_CALL_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        # Postgres is the truth and already says cancelled; the scheduler reconciles Redis against it.
        log.warning("could not cancel the job in redis: %r", exc, extra=job_fields(job_id))
        return None


async def clear_cancel_flag(dispatcher: Dispatcher, queue: str, job_id: uuid.UUID) -> None:
    """Remove a job's cancel flag before it runs again; 503 if Redis does not answer."""
    try:
        await asyncio.wait_for(dispatcher.clear_cancel(queue, job_id), timeout=REDIS_CALL_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable("the dispatch store did not answer; try again") from exc
