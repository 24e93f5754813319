"""What each event adds to the aggregates: duration, wait, histogram slots, attempt slot, error type.

Computed in Python so the recording statement only counts and sums (shared/analytics/histogram.py
owns the bucket layout). Odd data (a missing, negative, non-finite or non-numeric value) adds
nothing rather than failing the batch: the audit row is what must never be lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.analytics.histogram import attempt_slot, bucket_of
from shared.events import Envelope, EventType

_BIGINT_MAX = 2**63 - 1
# Events whose data says how long an attempt ran (worker and lost-lease outcomes).
FINISHED = frozenset({EventType.COMPLETED, EventType.RETRY, EventType.FAILED})
# Events whose data.error.type is counted.
ERRORED = frozenset({EventType.RETRY, EventType.FAILED})


@dataclass(frozen=True, slots=True)
class Facts:
    """One event's contribution; None where the event adds nothing to that figure."""

    duration_ms: int | None
    duration_slot: int | None  # 1-based index into duration_hist
    wait_ms: int | None
    wait_slot: int | None  # 1-based index into wait_hist
    attempt_slot: int  # 1-based index into *_by_attempt
    error_type: str | None
    worker_id: str | None


def _ms(value: Any) -> int | None:
    """A non-negative integer of milliseconds, or None for anything else (bools, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0:
        return None
    return min(int(value), _BIGINT_MAX)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def duration_ms(envelope: Envelope) -> int | None:
    """How long a finished attempt ran: `data.durationMs`, else `endedAt - startedAt`; None if unknown."""
    if envelope.type not in FINISHED:
        return None
    data = envelope.data
    given = _ms(data.get("durationMs"))
    if given is not None or "durationMs" in data:
        return given
    began, ended = _moment(data.get("startedAt")), _moment(data.get("endedAt"))
    if began is None or ended is None:
        return None  # e.g. a lost lease whose start was never recorded
    # As the worker computes durationMs (timedelta division: no float drift on whole ms).
    return _ms((ended - began) / timedelta(milliseconds=1))


def wait_ms(envelope: Envelope) -> int | None:
    """`data.waitMs` of a started event (from when the attempt was due to its start); None if absent."""
    if envelope.type is not EventType.STARTED:
        return None
    return _ms(envelope.data.get("waitMs"))


def error_type(envelope: Envelope) -> str | None:
    """`data.error.type` of a retry or failed event (None if absent or not text)."""
    if envelope.type not in ERRORED:
        return None
    error = envelope.data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and kind else None


def worker_of(envelope: Envelope) -> str | None:
    """The worker that finished the attempt (None for lost leases and non-outcome events)."""
    if envelope.type not in FINISHED:
        return None
    worker = envelope.data.get("workerId")
    return worker if isinstance(worker, str) and worker else None


def facts_of(envelope: Envelope) -> Facts:
    """Everything one event adds to the stats_* and worker_stats_minute rows."""
    duration = duration_ms(envelope)
    wait = wait_ms(envelope)
    return Facts(
        duration_ms=duration,
        duration_slot=None if duration is None else bucket_of(duration) + 1,
        wait_ms=wait,
        wait_slot=None if wait is None else bucket_of(wait) + 1,
        attempt_slot=attempt_slot(envelope.attempt),
        error_type=error_type(envelope),
        worker_id=worker_of(envelope),
    )
