"""A queue's dispatch controls as Redis holds them: the mirror of `queues.config` that pop.lua obeys.

Postgres (`queues`, migration 0006) is the truth; the api writes this mirror before it answers
a config change, so the change applies to every dispatch after the answer, on every replica;
the scheduler's reconciler writes it again after Redis lost it. Only what the scripts enforce
is mirrored: pause, rate limits, concurrency limits, aging and fairness weights (maxLength,
maxAttempts are the api's, at submission), plus the queue's default retry policy (a worker reads
it when it must pick a delay for a job that carries none).

Hash `{<prefix>:<queue>}:config`, every field optional (absent = no limit):
  paused  "1"
  rl      "<limit>:<periodMs>"      rateLimit
  krl     "<limit>:<periodMs>"      keyRateLimit (per rateLimitKey)
  conc    "<n>"                     concurrency
  kconc   "<n>"                     keyConcurrency (per concurrencyKey)
  age     "<everyMs>:<step>"        aging
  w:<key> "<weight>"                fairnessWeights (a key not listed weighs 1)
  retry   "<RetryPolicy JSON>"      retry: the queue's default policy, read by a worker when a
                                    job without its own policy (and no job-type default) fails
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `limit` starts in any window of `period_ms`."""

    limit: int
    period_ms: int


@dataclass(frozen=True, slots=True)
class Aging:
    """A waiting job gains `step` priority for every `every_ms` it waits."""

    every_ms: int
    step: int


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """What pop.lua and push.lua enforce for one queue."""

    paused: bool = False
    rate_limit: Limit | None = None
    key_rate_limit: Limit | None = None
    concurrency: int | None = None
    key_concurrency: int | None = None
    aging: Aging | None = None
    fairness_weights: Mapping[str, int] = field(default_factory=dict)
    retry_json: str | None = None  # the queue's default RetryPolicy, camelCase JSON

    def to_fields(self) -> dict[str, str]:
        """The Redis hash fields (an empty dict: no controls at all)."""
        out: dict[str, str] = {}
        if self.paused:
            out["paused"] = "1"
        if self.rate_limit is not None:
            out["rl"] = f"{self.rate_limit.limit}:{self.rate_limit.period_ms}"
        if self.key_rate_limit is not None:
            out["krl"] = f"{self.key_rate_limit.limit}:{self.key_rate_limit.period_ms}"
        if self.concurrency is not None:
            out["conc"] = str(self.concurrency)
        if self.key_concurrency is not None:
            out["kconc"] = str(self.key_concurrency)
        if self.aging is not None:
            out["age"] = f"{self.aging.every_ms}:{self.aging.step}"
        for key, weight in self.fairness_weights.items():
            out[f"w:{key}"] = str(weight)
        if self.retry_json is not None:
            out["retry"] = self.retry_json
        return out

    @classmethod
    def from_fields(cls, raw: Mapping[bytes | str, bytes | str]) -> DispatchConfig:
        """Parse the Redis hash back (the inverse of to_fields)."""
        fields = {_text(k): _text(v) for k, v in raw.items()}

        def limit(name: str) -> Limit | None:
            value = fields.get(name)
            if value is None:
                return None
            n, period = value.split(":", 1)
            return Limit(int(n), int(period))

        age = fields.get("age")
        aging = None
        if age is not None:
            every, step = age.split(":", 1)
            aging = Aging(int(every), int(step))
        return cls(
            paused=fields.get("paused") == "1",
            rate_limit=limit("rl"),
            key_rate_limit=limit("krl"),
            concurrency=int(fields["conc"]) if "conc" in fields else None,
            key_concurrency=int(fields["kconc"]) if "kconc" in fields else None,
            aging=aging,
            fairness_weights={k[2:]: int(v) for k, v in fields.items() if k.startswith("w:")},
            retry_json=fields.get("retry"),
        )

    @classmethod
    def from_stored(cls, config: Mapping[str, Any], paused: bool) -> DispatchConfig:
        """From a `queues` row: its camelCase `config` JSON (DESIGN §5 shape) and its pause flag."""

        def limit(name: str) -> Limit | None:
            value = config.get(name)
            return None if value is None else Limit(int(value["limit"]), int(value["periodMs"]))

        aging = config.get("aging")
        return cls(
            paused=paused,
            rate_limit=limit("rateLimit"),
            key_rate_limit=limit("keyRateLimit"),
            concurrency=config.get("concurrency"),
            key_concurrency=config.get("keyConcurrency"),
            aging=None if aging is None else Aging(int(aging["everyMs"]), int(aging["step"])),
            fairness_weights=dict(config.get("fairnessWeights") or {}),
            retry_json=None if config.get("retry") is None else orjson.dumps(config["retry"]).decode(),
        )


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
