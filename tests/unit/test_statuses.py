"""The job vocabulary of shared.models against DESIGN §4 and §5, stated here rather than copied from it."""

from __future__ import annotations

from shared.models import DEFAULT_PRIORITY, PRIORITY_WORDS, TERMINAL, WAITING, JobStatus

# DESIGN §4, in lifecycle order.
LIFECYCLE = ["pending", "blocked", "scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled"]


def test_the_statuses_are_the_lifecycle_of_design() -> None:
    assert [status.value for status in JobStatus] == LIFECYCLE


def test_completed_failed_and_cancelled_are_terminal_and_the_rest_but_running_waits() -> None:
    assert {status.value for status in TERMINAL} == {"completed", "failed", "cancelled"}
    # Cancelled at once by the api (DESIGN §5): every status that is neither running nor over.
    assert {status.value for status in WAITING} == {"pending", "blocked", "scheduled", "queued", "retrying"}


def test_priority_words_and_the_default() -> None:
    assert PRIORITY_WORDS == {"high": 8, "normal": 5, "low": 2}
    assert DEFAULT_PRIORITY == 5
