"""How an attempt ended, and what follows from it: completed, retry (with a delay) or failed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from shared.errors import JobError, RetryableError
from shared.models import ErrorInfo, JobSpec, RetryPolicy

MAX_MESSAGE_CHARS = 2000
# Results travel inside a Kafka message (2 MiB request limit); a larger one could never be
# published and would wedge the job, so it fails permanently instead.
MAX_RESULT_BYTES = 512 * 1024

UNKNOWN_JOB_TYPE = "unknown_job_type"
TIMEOUT = "timeout"
WORKER_SHUTDOWN = "worker_shutdown"


class Verdict(StrEnum):
    """The event an attempt's outcome turns into."""

    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"


class FailReason(StrEnum):
    """Why a job failed for good (`failed` event `reason`)."""

    EXHAUSTED = "exhausted"
    PERMANENT = "permanent"
    UNKNOWN_JOB_TYPE = "unknown_job_type"


@dataclass(frozen=True)
class Outcome:
    """What the handler produced: a result, or an error (with an optional Retry-After)."""

    result: Any = None
    error: ErrorInfo | None = None
    retry_after_s: float | None = None
    unknown_type: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Decision:
    """The verdict for one attempt; `delay_ms` only matters for a retry."""

    verdict: Verdict
    reason: FailReason | None = None
    delay_ms: int = 0


def _message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def error_info(error_type: str, message: str, retryable: bool) -> ErrorInfo:
    """An ErrorInfo with a bounded message."""
    return ErrorInfo(type=error_type, message=_message(message), retryable=retryable)


def success(result: Any) -> Outcome:
    """A handler's return value; None means `{}`. Unencodable or oversized results fail permanently."""
    value = {} if result is None else result
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        return Outcome(error=error_info("invalid_result", f"result is not JSON: {exc}", False))
    if size > MAX_RESULT_BYTES:
        return Outcome(error=error_info("invalid_result", f"result is {size} bytes (max {MAX_RESULT_BYTES})", False))
    return Outcome(result=value)


def from_exception(exc: BaseException) -> Outcome:
    """Map a handler exception: JobError subclasses say whether to retry; anything else retries."""
    if isinstance(exc, JobError):
        retry_after = exc.retry_after_s if isinstance(exc, RetryableError) else None
        return Outcome(error=error_info(exc.error_type, str(exc), exc.retryable), retry_after_s=retry_after)
    return Outcome(error=error_info(type(exc).__name__, str(exc) or repr(exc), True))


def timed_out(timeout_ms: int) -> Outcome:
    """The handler ran past its deadline."""
    return Outcome(error=error_info(TIMEOUT, f"handler exceeded its timeout of {timeout_ms} ms", True))


def unknown_job_type(job_type: str) -> Outcome:
    """No handler is registered for the job's type."""
    return Outcome(
        error=error_info(UNKNOWN_JOB_TYPE, f"no handler for job type {job_type!r}", False), unknown_type=True
    )


def retries(outcome: Outcome, spec: JobSpec) -> bool:
    """Whether this outcome leads to another attempt (then a retry policy picks the delay)."""
    return (
        outcome.error is not None and outcome.error.retryable and not outcome.unknown_type
        and spec.attempt < spec.max_attempts
    )


def decide(outcome: Outcome, spec: JobSpec, policy: RetryPolicy | None = None) -> Decision:
    """Completed, retry after a backoff (Retry-After wins, capped by maxDelayMs), or failed with a reason.

    `policy` is the one resolved for the job (its own, its type's or its queue's); None: the job's own or RetryPolicy().
    """
    if outcome.error is None:
        return Decision(Verdict.COMPLETED)
    if outcome.unknown_type:
        return Decision(Verdict.FAILED, FailReason.UNKNOWN_JOB_TYPE)
    if not outcome.error.retryable:
        return Decision(Verdict.FAILED, FailReason.PERMANENT)
    if spec.attempt >= spec.max_attempts:
        return Decision(Verdict.FAILED, FailReason.EXHAUSTED)
    policy = policy or spec.retry or RetryPolicy()
    if outcome.retry_after_s is not None:
        delay = min(int(outcome.retry_after_s * 1000), policy.max_delay_ms)
    else:
        delay = policy.delay_ms(spec.attempt)
    return Decision(Verdict.RETRY, delay_ms=max(0, delay))
