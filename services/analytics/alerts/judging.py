"""What every condition shares: a reading per tick, and the hysteresis that turns readings into opens and resolves.

A reading says whether the condition is above its open level (`breaching`) and whether it is below its
resolve level (`cleared`); between the two nothing changes, which is what keeps an alert from flapping
around one threshold. An open needs the breach to have lasted `open_after_s` (a rule's `forS`; 0 for
anomalies); a resolve needs the clear to have lasted `resolve_after_s`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from services.analytics.alerts.store import Condition


class Change(Enum):
    """What a tick does to a condition's alert."""

    OPEN = "open"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Reading:
    """One condition judged once: where it stands and what an alert about it says."""

    key: str
    kind: str
    queue: str | None
    job_type: str | None
    severity: str
    breaching: bool
    cleared: bool
    details: dict[str, Any]
    tenant: str | None = None
    rule_id: uuid.UUID | None = None
    webhook_url: str | None = None
    open_after_s: float = 0.0
    # Queue-level alerts: the tenants with jobs in the queue (routing on Kafka only, never shown).
    tenants: list[str] = field(default_factory=list)


def step(state: Condition, is_open: bool, reading: Reading, now: datetime, resolve_after_s: float) -> Change | None:
    """Advance the condition's timers by one reading; the change it makes, if any."""
    state.breach_since = (state.breach_since or now) if reading.breaching else None
    if not is_open:
        state.clear_since = None
        if state.breach_since is not None and (now - state.breach_since).total_seconds() >= reading.open_after_s:
            return Change.OPEN
        return None
    if not reading.cleared:
        state.clear_since = None
        return None
    state.clear_since = state.clear_since or now
    if (now - state.clear_since).total_seconds() >= resolve_after_s:
        return Change.RESOLVE
    return None


def ewma(baseline: float | None, value: float, alpha: float, weight: float = 1.0) -> float:
    """The baseline after taking in `value` (with `weight` ≤ 1 for thin samples); no baseline counts as 0."""
    current = 0.0 if baseline is None else baseline
    return current + alpha * min(weight, 1.0) * (value - current)
