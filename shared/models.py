"""Job vocabulary shared by every service: statuses, retry policy, the dispatch payload."""

from __future__ import annotations

import math
import random
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class JobStatus(StrEnum):
    """DESIGN §4 lifecycle."""

    PENDING = "pending"
    BLOCKED = "blocked"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
WAITING: frozenset[JobStatus] = frozenset(
    {JobStatus.PENDING, JobStatus.BLOCKED, JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING}
)

DEFAULT_PRIORITY = 5
DEFAULT_MAX_ATTEMPTS = 3
PRIORITY_WORDS: dict[str, int] = {"high": 8, "normal": 5, "low": 2}


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RetryPolicy(CamelModel):
    """How long to wait before the next attempt (DESIGN §5 `retry`).

    The computed delay after failed attempt n (1-based): `exponential` base * factor^(n-1),
    `linear` base * n, `fixed` base, `none` 0 (retry at once); capped at `max_delay_ms`.
    With `jitter` (the default) the delay is drawn uniformly from [0, computed] ("full jitter"),
    which spreads a herd of retries best.
    """

    strategy: Literal["exponential", "linear", "fixed", "none"] = "exponential"
    base_delay_ms: int = Field(default=1000, ge=0, le=86_400_000)
    max_delay_ms: int = Field(default=300_000, ge=0, le=7 * 86_400_000)
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    jitter: bool = True

    def ceiling_ms(self, failed_attempt: int) -> int:
        """The delay after `failed_attempt` (1-based) failed, before jitter: never above `max_delay_ms`."""
        n = max(failed_attempt, 1)
        if self.strategy == "none":
            return 0
        cap = float(self.max_delay_ms)
        if self.strategy == "fixed":
            raw = float(self.base_delay_ms)
        elif self.strategy == "linear":
            raw = float(self.base_delay_ms) * n
        else:
            # factor^(n-1) overflows a float for large n; past the cap its value no longer matters.
            if self.base_delay_ms == 0:
                raw = 0.0
            elif (n - 1) * math.log(self.factor) + math.log(self.base_delay_ms) > math.log(cap + 1) + 1:
                raw = cap
            else:
                raw = float(self.base_delay_ms) * self.factor ** (n - 1)
        return int(min(raw, cap))

    def delay_ms(self, failed_attempt: int, rng: random.Random | None = None) -> int:
        """Backoff after `failed_attempt` (1-based) failed: full jitter over `ceiling_ms` when `jitter`."""
        ceiling = self.ceiling_ms(failed_attempt)
        if self.jitter and ceiling > 0:
            return int((rng or random).random() * ceiling)
        return ceiling


class ErrorInfo(CamelModel):
    """The error of one failed attempt."""

    type: str
    message: str
    retryable: bool


class JobSpec(CamelModel):
    """What the scheduler hands a worker through Redis: everything needed to run one attempt."""

    # Fields a newer scheduler adds are ignored, not refused: during a rolling deploy an older
    # worker still runs the jobs a newer scheduler queued (it only lacks what the field adds).
    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    tenant: str = "default"
    queue: str
    job_type: str
    payload: dict[str, Any]
    priority: int = DEFAULT_PRIORITY
    attempt: int = 1
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # None: the job gave no policy; the worker then applies its job type's default, else the
    # queue's (`retry` of its config), else RetryPolicy().
    retry: RetryPolicy | None = None
    timeout_ms: int | None = None
    submitted_at_ms: int = 0
    # When this attempt became due (epoch ms; 0: not known): its retry's next run time, its
    # scheduled time, else when it was submitted or queued. The worker's `waitMs` counts from it.
    due_at_ms: int = 0
    trace_parent: str | None = None
    # DESIGN §5 scheduling keys: the job's share of its queue's per-key limits and fairness.
    rate_limit_key: str | None = None
    concurrency_key: str | None = None
    fairness_key: str | None = None
    # The last `ctx.checkpoint(state)` of an earlier attempt (None: none), so a retry resumes.
    checkpoint_state: Any = None
