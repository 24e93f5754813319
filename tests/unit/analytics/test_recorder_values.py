"""The values the analytics recorder derives from envelopes (no database)."""

from __future__ import annotations

import uuid

import pytest

from services.analytics.recorder import RecordResult, duration_ms
from shared.events import Envelope, EventType


def env(kind: EventType, data: dict[str, object]) -> Envelope:
    return Envelope(type=kind, job_id=uuid.uuid4(), queue="q", job_type="t", data=data)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1500, 1500), (12.7, 12), (0, 0), (-5, 0), (True, 0), ("100", 0), (None, 0), (float("nan"), 0), (float("inf"), 0),
     (10**30, 2**63 - 1)],
)
def test_duration_of_completed_events(value: object, expected: int) -> None:
    assert duration_ms(env(EventType.COMPLETED, {"durationMs": value})) == expected


def test_duration_only_counts_completed_events() -> None:
    assert duration_ms(env(EventType.FAILED, {"durationMs": 300})) == 0
    assert duration_ms(env(EventType.COMPLETED, {})) == 0


def test_results_add_up() -> None:
    total = RecordResult(inserted={"completed": 2}, duplicates=1)
    total.add(RecordResult(inserted={"completed": 1, "failed": 3}, duplicates=2, rejected=1))
    assert total.inserted == {"completed": 3, "failed": 3}
    assert (total.inserted_total, total.duplicates, total.rejected) == (6, 3, 1)
