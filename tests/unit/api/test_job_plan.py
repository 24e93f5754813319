"""Normalizing a submission: run time, payload limits, the idempotency fingerprint, the event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.api.http.problems import PayloadTooLarge, ValidationFailed
from services.api.jobs.events import submitted_event
from services.api.jobs.job_plan import plan_job, request_hash
from services.api.jobs.schemas import JobSubmission

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def sub(**fields: object) -> JobSubmission:
    return JobSubmission.model_validate({"queue": "q", "jobType": "t", **fields})


def test_delay_becomes_an_absolute_run_time() -> None:
    job = plan_job(sub(delayMs=1500), [], now=NOW, max_payload_bytes=100)
    assert job.scheduled_for == NOW + timedelta(milliseconds=1500)


def test_naive_scheduled_for_is_utc() -> None:
    job = plan_job(sub(scheduledFor="2031-01-01T10:00:00"), [], now=NOW, max_payload_bytes=100)
    assert job.scheduled_for == datetime(2031, 1, 1, 10, tzinfo=UTC)


def test_offset_scheduled_for_is_converted_to_utc() -> None:
    job = plan_job(sub(scheduledFor="2031-01-01T10:00:00+02:00"), [], now=NOW, max_payload_bytes=100)
    assert job.scheduled_for == datetime(2031, 1, 1, 8, tzinfo=UTC)


def test_payload_limit_counts_serialized_bytes() -> None:
    plan_job(sub(payload={"a": "x" * 90}), [], now=NOW, max_payload_bytes=100)  # 98 bytes
    with pytest.raises(PayloadTooLarge) as info:
        plan_job(sub(payload={"a": "x" * 93}), [], now=NOW, max_payload_bytes=100, prefix="jobs[2].")
    assert [e.field for e in info.value.errors] == ["jobs[2].payload"]


@pytest.mark.parametrize(("text", "refused"), [("a\u0000b", True), ("a\\u0000b", False), ("\\\u0000", True)])
def test_nul_characters_are_refused_but_escaped_text_is_not(text: str, refused: bool) -> None:
    s = sub(payload={"s": text})
    if refused:
        with pytest.raises(ValidationFailed):
            plan_job(s, [], now=NOW, max_payload_bytes=1000)
    else:
        plan_job(s, [], now=NOW, max_payload_bytes=1000)


def test_fingerprint_ignores_spelling_and_defaults_but_not_content() -> None:
    a = sub(payload={"x": 1, "y": 2})
    b = JobSubmission.model_validate({"queue": "q", "job_type": "t", "payload": {"y": 2, "x": 1}, "priority": 5,
                                      "idempotencyKey": "k"})
    c = sub(payload={"x": 1, "y": 3})
    assert request_hash(a, []) == request_hash(b, [])
    assert request_hash(a, []) != request_hash(c, [])
    assert request_hash(a, []) != request_hash(a, [uuid.uuid4()])


def test_submitted_event_carries_the_contract() -> None:
    dep = uuid.uuid4()
    s = sub(payload={"p": 1}, priority="low", tags=["a"], callbackUrl="https://h/x", delayMs=10)
    job = plan_job(s, [dep], now=NOW, max_payload_bytes=100)
    batch = uuid.uuid4()
    event = submitted_event(job, "acme", batch)
    assert event.type == "submitted" and event.attempt == 0 and event.tenant == "acme"
    assert event.job_id == job.id and event.queue == "q" and event.job_type == "t"
    assert event.data == {
        "priority": 2, "payload": {"p": 1}, "maxAttempts": 3,
        "retry": None,  # none given: the worker resolves the job type's or the queue's default
        "timeoutMs": None, "runAt": (NOW + timedelta(milliseconds=10)).isoformat(), "dependsOn": [str(dep)],
        "tags": ["a"], "batchId": str(batch), "callbackUrl": "https://h/x",
    }
    assert "tenant" not in event.to_wire()
    own = plan_job(sub(retry={"strategy": "fixed", "baseDelayMs": 10}), [], now=NOW, max_payload_bytes=100)
    assert submitted_event(own, "acme", None).data["retry"] == {
        "strategy": "fixed", "baseDelayMs": 10, "maxDelayMs": 300000, "factor": 2.0, "jitter": True,
    }


def test_max_attempts_defaults_to_the_queue_then_three() -> None:
    assert plan_job(sub(), [], now=NOW, max_payload_bytes=100, default_max_attempts=7).max_attempts == 7
    assert plan_job(sub(maxAttempts=2), [], now=NOW, max_payload_bytes=100, default_max_attempts=7).max_attempts == 2
    assert plan_job(sub(), [], now=NOW, max_payload_bytes=100).max_attempts == 3
    # The fingerprint counts a left-out maxAttempts as 3, whatever the queue's default.
    assert request_hash(sub(), []) == request_hash(sub(maxAttempts=3), [])


def test_scheduling_keys_are_planned() -> None:
    job = plan_job(sub(rateLimitKey="r", concurrency_key="c", fairnessKey="f"), [], now=NOW, max_payload_bytes=100)
    assert (job.rate_limit_key, job.concurrency_key, job.fairness_key) == ("r", "c", "f")
    assert job.retry is None and job.retry_json is None
