"""The worker: runs jobs leased from Redis and reports every step on Kafka.

The handler API (README "Writing handlers"): register a job type with `@handler("type")` (optionally
`retry=RetryPolicy(...)`, the type's default), receive a `JobContext`, and end an attempt by
returning a JSON result or raising `RetryableError(retry_after=...)` / `PermanentError`.
"""

from services.worker.context import JobContext
from services.worker.registry import handler
from shared.errors import JobError, PermanentError, RetryableError
from shared.models import RetryPolicy

__all__ = ["JobContext", "JobError", "PermanentError", "RetryPolicy", "RetryableError", "handler"]
