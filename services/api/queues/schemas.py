"""Queue config (DESIGN §5): the PUT body, the full config shape, and the queue resource.

Every number has bounds, and the document states them exactly as validated (test_openapi_contract).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from services.api.jobs.field_types import PRINTABLE, Label, MaxAttempts, whole_number
from services.api.jobs.schemas import RetrySubmission
from shared.models import CamelModel

MAX_WEIGHTED_KEYS = 1000


LimitCount = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(whole_number)]
PeriodMs = Annotated[int, Field(ge=1, le=86_400_000), BeforeValidator(whole_number)]
Concurrency = Annotated[int, Field(ge=1, le=100_000), BeforeValidator(whole_number)]
MaxLength = Annotated[int, Field(ge=1, le=1_000_000_000), BeforeValidator(whole_number)]
AgingEveryMs = Annotated[int, Field(ge=1, le=86_400_000), BeforeValidator(whole_number)]
AgingStep = Annotated[int, Field(ge=1, le=10), BeforeValidator(whole_number)]
Weight = Annotated[int, Field(ge=1, le=1000), BeforeValidator(whole_number)]
# pydantic would state the key rule as `patternProperties`, which leaves other keys unchecked: say it exactly.
FairnessWeights = Annotated[
    dict[Label, Weight], Field(max_length=MAX_WEIGHTED_KEYS),
    WithJsonSchema({
        "type": "object", "maxProperties": MAX_WEIGHTED_KEYS,
        "propertyNames": {"minLength": 1, "maxLength": 128, "pattern": PRINTABLE},
        "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 1000},
    }),
]
ConfigKeys = ("rateLimit", "keyRateLimit", "concurrency", "keyConcurrency", "maxLength", "retry", "maxAttempts",
              "aging", "fairnessWeights")


class RateLimit(CamelModel):
    """At most `limit` starts in any window of `periodMs`, across every worker."""

    limit: LimitCount
    period_ms: PeriodMs


class AgingConfig(CamelModel):
    """A waiting job gains `step` priority for every `everyMs` it waits (so low priorities cannot starve)."""

    every_ms: AgingEveryMs
    step: AgingStep


def _no_null_keys(schema: dict[str, Any]) -> None:
    # Every field takes null (it clears the setting); the models' `None` defaults mean "left out", so
    # the document lists no defaults.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class QueueConfigPatch(CamelModel):
    """PUT /api/v1/queues/{name}: any subset of the queue config; keys left out keep their value, `null` clears."""

    model_config = ConfigDict(json_schema_extra=_no_null_keys)

    rate_limit: RateLimit | None = Field(default=None, description="Starts of the whole queue per period")
    key_rate_limit: RateLimit | None = Field(default=None, description="Starts per distinct `rateLimitKey`")
    concurrency: Concurrency | None = Field(default=None, description="Jobs of the queue running at once")
    key_concurrency: Concurrency | None = Field(default=None, description="Running at once per `concurrencyKey`")
    max_length: MaxLength | None = Field(
        default=None, description="Backlog (pending, queued, retrying) at which submissions answer 429",
    )
    retry: RetrySubmission | None = Field(default=None, description="Retry policy of jobs that give none")
    max_attempts: MaxAttempts | None = Field(default=None, description="maxAttempts of jobs that give none")
    aging: AgingConfig | None = None
    fairness_weights: FairnessWeights | None = Field(
        default=None, description="Weight (1-1000) of each `fairnessKey` in its turns; a key not listed weighs 1",
    )

    def stored(self) -> dict[str, Any]:
        """The keys the request gave, camelCase, as the `queues.config` JSON stores them (null clears)."""
        given = self.model_dump(mode="json", by_alias=True, include=self.model_fields_set)
        if given.get("fairnessWeights") == {}:
            given["fairnessWeights"] = None  # no weights is every key at 1: the same as none
        return given


def merged(current: dict[str, Any], patch: QueueConfigPatch) -> dict[str, Any]:
    """The stored config after the patch: given keys replace, null removes, the rest stay."""
    out = dict(current)
    for key, value in patch.stored().items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def full_config(stored: dict[str, Any]) -> dict[str, Any]:
    """The `config` of the queue resource: every key of the DESIGN shape, null when unset."""
    return {key: stored.get(key) for key in ConfigKeys}


# ---- responses (documentation only: handlers render plain dicts) ----


class QueueConfig(CamelModel):
    """A queue's config: every key present, null when unset."""

    rate_limit: RateLimit | None
    key_rate_limit: RateLimit | None
    concurrency: int | None
    key_concurrency: int | None
    max_length: int | None
    retry: RetrySubmission | None
    max_attempts: int | None
    aging: AgingConfig | None
    fairness_weights: dict[str, int] | None


class QueueCounts(CamelModel):
    """Jobs of the queue by status (the caller's tenant's, or every tenant's for a `cluster` key)."""

    pending: int
    blocked: int
    scheduled: int
    queued: int
    running: int
    retrying: int
    completed: int
    failed: int
    cancelled: int


class QueueView(CamelModel):
    """GET /queues/{name} and the items of GET /queues."""

    name: str
    paused: bool
    config: QueueConfig
    counts: QueueCounts
    oldest_waiting_age_ms: int | None = Field(
        description="Age of the oldest job ready to run and not started (pending, queued, or due to retry)",
    )
    throughput_per_min: int = Field(description="Jobs completed in the last minute")


class QueueList(CamelModel):
    """GET /queues: every queue with jobs of the caller or a config, by name."""

    items: list[QueueView]
