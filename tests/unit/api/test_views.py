"""Cursors are opaque round trips; anything else is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.api.jobs.views import decode_cursor, encode_cursor


def test_cursor_round_trip_keeps_microseconds() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    job_id = uuid.uuid4()
    cursor = encode_cursor(when, job_id)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == (when, job_id)


@pytest.mark.parametrize("junk", ["", "x", "!!!!", "WzEsMl0", "bnVsbA", "WyIyMDMwLTAxLTAxVDAwOjAwOjAwIiwieCJd"])
def test_junk_cursors_are_value_errors(junk: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(junk)
