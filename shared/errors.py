"""The one exception root of Conveyor and the outcomes handlers signal with."""

from __future__ import annotations


class ConveyorError(Exception):
    """Something went wrong in Conveyor."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class JobError(ConveyorError):
    """A job handler failed."""

    retryable: bool = True
    error_type: str = "error"

    def __init__(self, message: str | None = None, *, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class RetryableError(JobError):
    """The attempt failed but a later attempt may succeed."""

    retryable = True
    error_type = "transient"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type)
        self.retry_after_s = retry_after_s


class PermanentError(JobError):
    """The job cannot succeed; retrying would not help."""

    retryable = False
    error_type = "permanent"


class JobCancelled(ConveyorError):
    """The job was cancelled while it ran."""


class DispatchError(ConveyorError):
    """The Redis dispatch protocol refused an operation."""


class EventPublishError(ConveyorError):
    """Kafka did not acknowledge an event in time."""
