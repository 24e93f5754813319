"""The one exception root of Conveyor and the outcomes handlers signal with."""

from __future__ import annotations

import math
from datetime import timedelta


class ConveyorError(Exception):
    """Something went wrong in Conveyor."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class JobError(ConveyorError):
    """A job handler failed; raise a subclass (`RetryableError`, `PermanentError`) to say what follows.

    `error_type` names the failure in the job's `error.type` (default "transient" / "permanent").
    """

    retryable: bool = True
    error_type: str = "error"

    def __init__(self, message: str | None = None, *, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class RetryableError(JobError):
    """The attempt failed but a later attempt may succeed: the job is retried while attempts remain.

    `retry_after` (seconds, or a timedelta) asks for the next attempt no sooner than that, instead
    of the retry policy's backoff (still capped by the policy's `maxDelayMs`). Any exception that
    is not a JobError is treated as retryable too.
    """

    retryable = True
    error_type = "transient"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | timedelta | None = None,
        retry_after_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type)
        if isinstance(retry_after, timedelta):
            retry_after = retry_after.total_seconds()
        chosen = retry_after if retry_after is not None else retry_after_s
        if chosen is not None and not (chosen >= 0 and math.isfinite(chosen)):
            raise ValueError(f"retry_after must be a finite number of seconds >= 0, not {chosen!r}")
        self.retry_after_s: float | None = None if chosen is None else float(chosen)

    @property
    def retry_after(self) -> float | None:
        """Seconds the handler asked to wait before the next attempt (None: the policy decides)."""
        return self.retry_after_s


class PermanentError(JobError):
    """The job cannot succeed; retrying would not help: it fails at once (dead-letter queue)."""

    retryable = False
    error_type = "permanent"


class JobCancelled(ConveyorError):
    """The job was cancelled while it ran."""


class DispatchError(ConveyorError):
    """The Redis dispatch protocol refused an operation."""


class EventPublishError(ConveyorError):
    """Kafka did not acknowledge an event in time."""
