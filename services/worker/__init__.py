"""The worker: runs jobs leased from Redis and reports every step on Kafka.

User code registers job types with `@handler("type")` and receives a `JobContext`.
"""

from services.worker.context import JobContext
from services.worker.registry import handler

__all__ = ["JobContext", "handler"]
