"""The mapping from a handler's outcome to the attempt's event and lease release."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.worker import outcomes
from services.worker.attempt import InFlight, StopReason, conclude
from shared.dispatch.protocol import Lease
from shared.errors import PermanentError, RetryableError
from shared.events import EventType, utcnow
from shared.models import RetryPolicy
from tests.unit.worker.helpers import make_ctx, make_spec


def test_success_none_is_an_empty_result_and_junk_results_fail_permanently() -> None:
    assert outcomes.success(None).result == {}
    assert outcomes.success({"a": 1}).result == {"a": 1}
    bad = outcomes.success({"x": object()})
    assert bad.error is not None and bad.error.type == "invalid_result" and not bad.error.retryable
    huge = outcomes.success({"x": "a" * (outcomes.MAX_RESULT_BYTES + 1)})
    assert huge.error is not None and huge.error.type == "invalid_result"


def test_exceptions_map_to_types_and_retryability() -> None:
    transient = outcomes.from_exception(RetryableError("later", retry_after_s=3))
    assert transient.error is not None
    assert (transient.error.type, transient.error.message, transient.error.retryable) == ("transient", "later", True)
    assert transient.retry_after_s == 3
    permanent = outcomes.from_exception(PermanentError("no", error_type="http_404"))
    assert permanent.error is not None and (permanent.error.type, permanent.error.retryable) == ("http_404", False)
    other = outcomes.from_exception(KeyError("k"))
    assert other.error is not None and (other.error.type, other.error.retryable) == ("KeyError", True)
    long = outcomes.from_exception(ValueError("x" * 10_000))
    assert long.error is not None and len(long.error.message) == outcomes.MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "error", "expected"),
    [
        (1, 3, RetryableError("t"), (outcomes.Verdict.RETRY, None)),
        (2, 3, ValueError("v"), (outcomes.Verdict.RETRY, None)),
        (3, 3, RetryableError("t"), (outcomes.Verdict.FAILED, outcomes.FailReason.EXHAUSTED)),
        (1, 3, PermanentError("p"), (outcomes.Verdict.FAILED, outcomes.FailReason.PERMANENT)),
        (1, 1, None, (outcomes.Verdict.COMPLETED, None)),
    ],
)
def test_decide(attempt: int, max_attempts: int, error: Exception | None, expected: tuple[object, object]) -> None:
    spec = make_spec(attempt=attempt, max_attempts=max_attempts)
    outcome = outcomes.success({}) if error is None else outcomes.from_exception(error)
    decision = outcomes.decide(outcome, spec)
    assert (decision.verdict, decision.reason) == expected


def test_unknown_type_fails_at_once_even_with_attempts_left() -> None:
    decision = outcomes.decide(outcomes.unknown_job_type("nope"), make_spec(max_attempts=5))
    assert (decision.verdict, decision.reason) == (outcomes.Verdict.FAILED, outcomes.FailReason.UNKNOWN_JOB_TYPE)


def test_retry_delay_follows_the_policy_and_retry_after_is_capped() -> None:
    spec = make_spec(attempt=2, retry=RetryPolicy(base_delay_ms=100, factor=3, max_delay_ms=5_000, jitter=False))
    assert outcomes.decide(outcomes.from_exception(RetryableError()), spec).delay_ms == 300
    asked = outcomes.from_exception(RetryableError(retry_after_s=2))
    assert outcomes.decide(asked, spec).delay_ms == 2_000
    greedy = outcomes.from_exception(RetryableError(retry_after_s=3600))
    assert outcomes.decide(greedy, spec).delay_ms == 5_000


def test_timeout_is_retryable_with_type_timeout() -> None:
    outcome = outcomes.timed_out(250)
    assert outcome.error is not None and outcome.error.type == "timeout" and outcome.error.retryable


def _record(**extra: Any) -> InFlight:
    spec = make_spec(**extra)
    return InFlight(Lease(spec, "tok"), make_ctx(spec, http=httpx.AsyncClient()))


def test_conclude_builds_each_event_with_its_release() -> None:
    started = utcnow()
    ended = started + timedelta(milliseconds=42)

    rec = _record(tenant="acme")
    env, release = conclude(rec, outcomes.success({"ok": True}), "w1", started, ended)
    assert env.type is EventType.COMPLETED and release.label == "completed" and env.tenant == "acme"
    assert env.data == {"result": {"ok": True}, "workerId": "w1", "startedAt": started.isoformat(),
                        "endedAt": ended.isoformat(), "durationMs": 42}

    rec = _record(attempt=1, max_attempts=3)
    env, release = conclude(rec, outcomes.from_exception(RetryableError("boom")), "w1", started, ended)
    assert env.type is EventType.RETRY and env.attempt == 1
    assert env.data["error"] == {"type": "transient", "message": "boom", "retryable": True}
    assert env.data["delayMs"] == 100
    assert env.data["nextRunAt"] == (ended + timedelta(milliseconds=100)).isoformat()
    assert release.label == "retry"  # the scheduler pushes the next attempt at nextRunAt

    rec = _record(attempt=3, max_attempts=3)
    env, release = conclude(rec, outcomes.from_exception(RetryableError("boom")), "w1", started, ended)
    assert env.type is EventType.FAILED and env.data["reason"] == "exhausted" and release.label == "failed"


def test_conclude_after_the_worker_stopped_the_handler() -> None:
    started = utcnow()
    rec = _record()
    rec.stop_reason = StopReason.CANCELLED
    env, release = conclude(rec, None, "w1", started, started)
    assert env.type is EventType.CANCELLED and env.data == {"reason": "cancelled_by_user", "by": "worker"}
    assert release.label == "cancelled"

    rec = _record()
    rec.stop_reason = StopReason.SHUTDOWN
    env, release = conclude(rec, None, "w1", started, started)
    assert env.type is EventType.RETRY and env.data["error"]["type"] == "worker_shutdown"
    assert env.data["delayMs"] == 0 and env.data["nextRunAt"] == started.isoformat()
    assert release.label == "shutdown"

    # A handler that finished just before the shutdown reached it keeps its real outcome.
    rec = _record()
    rec.stop_reason = StopReason.SHUTDOWN
    env, _ = conclude(rec, outcomes.success({}), "w1", started, started)
    assert env.type is EventType.COMPLETED
