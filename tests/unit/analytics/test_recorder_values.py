"""The values the analytics recorder derives from envelopes (no database)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.analytics.facts import duration_ms, error_type, facts_of, wait_ms, worker_of
from services.analytics.recorder import RecordResult
from shared.analytics.histogram import MAX_ATTEMPT_SLOT, bucket_of
from shared.events import Envelope, EventType


def env(kind: EventType, data: dict[str, Any], attempt: int = 1) -> Envelope:
    return Envelope(type=kind, job_id=uuid.uuid4(), queue="q", job_type="t", data=data, attempt=attempt)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1500, 1500), (12.7, 12), (0, 0), (-5, None), (True, None), ("100", None), (None, None), (float("nan"), None),
     (float("inf"), None), (10**30, 2**63 - 1)],
)
def test_duration_of_completed_events(value: object, expected: int | None) -> None:
    assert duration_ms(env(EventType.COMPLETED, {"durationMs": value})) == expected


def test_retry_and_failed_durations_come_from_their_times_when_not_given() -> None:
    times = {"startedAt": "2024-05-01T10:00:00+00:00", "endedAt": "2024-05-01T10:00:01.250000+00:00"}
    assert duration_ms(env(EventType.RETRY, times)) == 1250
    assert duration_ms(env(EventType.FAILED, times)) == 1250
    assert duration_ms(env(EventType.FAILED, {**times, "durationMs": 300})) == 300
    # A lost lease whose start was never recorded, a naive timestamp, junk: no duration.
    assert duration_ms(env(EventType.FAILED, {**times, "startedAt": None})) is None
    assert duration_ms(env(EventType.RETRY, {**times, "startedAt": "2024-05-01T10:00:00"})) is None
    assert duration_ms(env(EventType.RETRY, {**times, "endedAt": "yesterday"})) is None
    assert duration_ms(env(EventType.COMPLETED, {})) is None


def test_only_finished_attempts_have_a_duration_and_only_starts_a_wait() -> None:
    assert duration_ms(env(EventType.STARTED, {"durationMs": 300})) is None
    assert wait_ms(env(EventType.STARTED, {"waitMs": 40})) == 40
    assert wait_ms(env(EventType.STARTED, {})) is None  # an older worker: not counted
    assert wait_ms(env(EventType.COMPLETED, {"waitMs": 40})) is None


def test_error_types_and_workers() -> None:
    assert error_type(env(EventType.RETRY, {"error": {"type": "Timeout", "message": "x"}})) == "Timeout"
    assert error_type(env(EventType.FAILED, {"error": {"type": ""}})) is None
    assert error_type(env(EventType.FAILED, {"error": "boom"})) is None
    assert error_type(env(EventType.COMPLETED, {"error": {"type": "Timeout"}})) is None
    assert worker_of(env(EventType.COMPLETED, {"workerId": "w1"})) == "w1"
    assert worker_of(env(EventType.FAILED, {"workerId": None})) is None  # a lost lease
    assert worker_of(env(EventType.STARTED, {"workerId": "w1"})) is None


def test_facts_put_values_in_their_one_based_slots() -> None:
    facts = facts_of(env(EventType.COMPLETED, {"durationMs": 700, "workerId": "w"}, attempt=3))
    assert (facts.duration_ms, facts.duration_slot, facts.attempt_slot) == (700, bucket_of(700) + 1, 3)
    assert (facts.wait_slot, facts.error_type, facts.worker_id) == (None, None, "w")
    assert facts_of(env(EventType.SUBMITTED, {}, attempt=0)).attempt_slot == 1
    assert facts_of(env(EventType.RETRY, {}, attempt=99)).attempt_slot == MAX_ATTEMPT_SLOT


def test_results_add_up() -> None:
    total = RecordResult(inserted={"completed": 2}, duplicates=1)
    total.add(RecordResult(inserted={"completed": 1, "failed": 3}, duplicates=2, rejected=1))
    assert total.inserted == {"completed": 3, "failed": 3}
    assert (total.inserted_total, total.duplicates, total.rejected) == (6, 3, 1)
