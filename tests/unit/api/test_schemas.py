"""Submission validation rules that need no server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.api.http.validation import field_errors, field_path
from services.api.jobs.field_types import HTTP_URL
from services.api.jobs.schemas import JobSubmission, RetrySubmission
from shared.models import RetryPolicy


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


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    sub = JobSubmission.model_validate_json(
        '{"queue": "q", "jobType": "t", "maxAttempts": 70.0, "timeoutMs": 5.0, "delayMs": 0.0,'
        ' "retry": {"baseDelayMs": 10.0, "maxDelayMs": 20.0, "factor": 3}}'
    )
    assert (sub.max_attempts, sub.timeout_ms, sub.delay_ms) == (70, 5, 0)
    assert sub.retry is not None
    assert type(sub.max_attempts) is int and type(sub.retry.base_delay_ms) is int
    assert (sub.retry.base_delay_ms, sub.retry.max_delay_ms, sub.retry.factor) == (10, 20, 3.0)


@pytest.mark.parametrize(("field", "bad"), [
    ("maxAttempts", 70.5), ("maxAttempts", "3"), ("maxAttempts", True), ("maxAttempts", 170.0),
    ("timeoutMs", "5"), ("delayMs", False), ("scheduledFor", 0), ("scheduledFor", "123"), ("scheduledFor", "0"),
])
def test_numbers_in_strings_booleans_and_fractions_are_refused(field: str, bad: object) -> None:
    assert fields_of({"queue": "q", "jobType": "t", field: bad}) == [field]


@pytest.mark.parametrize(("field", "bad"), [("baseDelayMs", "10"), ("factor", "2"), ("jitter", "true"), ("jitter", 1)])
def test_retry_fields_are_as_strict_as_their_json_types(field: str, bad: object) -> None:
    assert fields_of({"queue": "q", "jobType": "t", "retry": {field: bad}}) == [f"retry.{field}"]


def test_the_submitted_retry_has_the_bounds_and_defaults_of_the_stored_one() -> None:
    submitted = RetrySubmission.model_json_schema()["properties"]
    stored = RetryPolicy.model_json_schema()["properties"]
    assert submitted == stored
    assert RetrySubmission().model_dump() == RetryPolicy().model_dump()


def test_the_document_says_what_validation_refuses() -> None:
    schema = JobSubmission.model_json_schema(by_alias=True)
    priority = schema["properties"]["priority"]["anyOf"]
    assert priority == [{"type": "integer", "enum": list(range(11))},
                        {"type": "string", "enum": ["high", "normal", "low"]}]
    # scheduledFor and delayMs exclude each other.
    assert schema["not"]["required"] == ["scheduledFor", "delayMs"]
    assert "additionalProperties" in schema["properties"]["payload"]


@given(st.from_regex(HTTP_URL, fullmatch=True).filter(lambda url: len(url) <= 2048))
@settings(max_examples=300)
def test_every_url_the_documented_pattern_matches_is_accepted(url: str) -> None:
    assert JobSubmission.model_validate({"queue": "q", "jobType": "t", "callbackUrl": url}).callback_url == url
