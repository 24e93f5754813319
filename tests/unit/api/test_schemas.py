"""Submission validation rules that need no server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.api.http.validation import field_errors, field_path
from services.api.jobs.schemas import JobSubmission


def fields_of(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        JobSubmission.model_validate(body)
    return [e.field for e in field_errors(info.value.errors())]


@pytest.mark.parametrize(("given", "stored"), [(0, 0), (10, 10), ("high", 8), ("normal", 5), ("low", 2)])
def test_priority_accepts_numbers_and_words(given: object, stored: int) -> None:
    assert JobSubmission.model_validate({"queue": "q", "jobType": "t", "priority": given}).priority == stored


@pytest.mark.parametrize("bad", [11, -1, "urgent", "HIGH", 5.0, 5.5, True, False, None, [], "5"])
def test_priority_refuses_everything_else(bad: object) -> None:
    assert fields_of({"queue": "q", "jobType": "t", "priority": bad}) == ["priority"]


@pytest.mark.parametrize("name", ["a", "emails", "a.b-c_d", "0", "x" * 64])
def test_names_that_are_allowed(name: str) -> None:
    JobSubmission.model_validate({"queue": name, "jobType": name})


@pytest.mark.parametrize("name", ["", "A", "-a", ".a", "a b", "x" * 65, "é", "a/b"])
def test_names_that_are_refused(name: str) -> None:
    assert fields_of({"queue": name, "jobType": "t"}) == ["queue"]


def test_snake_case_and_camel_case_are_both_accepted() -> None:
    camel = JobSubmission.model_validate({"queue": "q", "jobType": "t", "maxAttempts": 4, "timeoutMs": 10})
    snake = JobSubmission.model_validate({"queue": "q", "job_type": "t", "max_attempts": 4, "timeout_ms": 10})
    assert camel == snake


def test_error_fields_are_camel_case_whatever_the_input_spelling() -> None:
    assert fields_of({"queue": "q", "job_type": "t", "max_attempts": 0}) == ["maxAttempts"]


def test_unknown_fields_are_named_as_sent() -> None:
    assert fields_of({"queue": "q", "jobType": "t", "some_thing": 1}) == ["some_thing"]


def test_schedule_is_one_of_two() -> None:
    assert fields_of({"queue": "q", "jobType": "t", "scheduledFor": "2030-01-01T00:00:00Z", "delayMs": 1}) == [
        "delayMs"
    ]


@pytest.mark.parametrize("url", ["http://example.com", "https://h:8080/p?q=1"])
def test_callback_urls_allowed(url: str) -> None:
    assert JobSubmission.model_validate({"queue": "q", "jobType": "t", "callbackUrl": url}).callback_url == url


@pytest.mark.parametrize("url", ["ftp://h/x", "http://", "/relative", "javascript:alert(1)", "http://h/\x00"])
def test_callback_urls_refused(url: str) -> None:
    assert fields_of({"queue": "q", "jobType": "t", "callbackUrl": url}) == ["callbackUrl"]


@pytest.mark.parametrize(("loc", "path"), [
    ((), "body"),
    (("priority",), "priority"),
    (("jobs", 3, "max_attempts"), "jobs[3].maxAttempts"),
    (("tags", 0), "tags[0]"),
    (("retry", "base_delay_ms"), "retry.baseDelayMs"),
])
def test_field_paths(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path


def test_request_locations_lose_their_source() -> None:
    errors = [{"loc": ("query", "limit"), "msg": "too big", "type": "less_than_equal"}]
    assert [(e.field, e.message) for e in field_errors(errors, strip_source=True)] == [("limit", "too big")]
