"""Which retry policy a failed job gets: its own > its type's > its queue's > RetryPolicy()."""

from __future__ import annotations

import asyncio

import pytest

from services.worker.retry_defaults import RetryDefaults, parse_type_defaults
from shared.dispatch.config import DispatchConfig
from shared.models import RetryPolicy
from tests.unit.worker.helpers import make_spec

OWN = RetryPolicy(strategy="fixed", base_delay_ms=1)
BY_TYPE = RetryPolicy(strategy="fixed", base_delay_ms=2)
QUEUE = RetryPolicy(strategy="fixed", base_delay_ms=3)


class Configs:
    """Queue configs as the Redis hash would answer, counting reads."""

    def __init__(self, retry: RetryPolicy | None) -> None:
        self.retry = retry
        self.reads = 0

    async def __call__(self, queue: str) -> DispatchConfig:
        self.reads += 1
        await asyncio.sleep(0.01)
        return DispatchConfig(retry_json=None if self.retry is None else self.retry.model_dump_json(by_alias=True))


def types(job_type: str) -> RetryPolicy | None:
    return BY_TYPE if job_type == "typed" else None


async def test_precedence_own_then_type_then_queue_then_default() -> None:
    configs = Configs(QUEUE)
    defaults = RetryDefaults(configs, types)
    assert await defaults.policy_for(make_spec("typed", retry=OWN)) == OWN
    assert await defaults.policy_for(make_spec("typed", retry=None)) == BY_TYPE
    assert configs.reads == 0  # the queue's hash is read only when it decides
    assert await defaults.policy_for(make_spec("plain", retry=None)) == QUEUE
    assert await RetryDefaults(Configs(None), types).policy_for(make_spec("plain", retry=None)) == RetryPolicy()


async def test_the_queue_default_is_read_once_for_a_burst_and_cached_briefly() -> None:
    configs = Configs(QUEUE)
    defaults = RetryDefaults(configs, types, cache_s=0.2)
    got = await asyncio.gather(*(defaults.policy_for(make_spec("plain", retry=None)) for _ in range(20)))
    assert got == [QUEUE] * 20 and configs.reads == 1
    configs.retry = None
    assert await defaults.policy_for(make_spec("plain", retry=None)) == QUEUE  # still cached
    await asyncio.sleep(0.25)
    assert await defaults.policy_for(make_spec("plain", retry=None)) == RetryPolicy()
    assert configs.reads == 2


async def test_an_unreadable_or_invalid_queue_default_falls_back_to_the_default() -> None:
    async def down(queue: str) -> DispatchConfig:
        raise ConnectionError("redis down")

    assert await RetryDefaults(down, types).policy_for(make_spec("plain", retry=None)) == RetryPolicy()

    async def junk(queue: str) -> DispatchConfig:
        return DispatchConfig(retry_json='{"strategy": "sometimes"}')

    assert await RetryDefaults(junk, types).policy_for(make_spec("plain", retry=None)) == RetryPolicy()


def test_type_defaults_setting_is_validated_naming_the_type() -> None:
    assert parse_type_defaults({"a": {"strategy": "linear", "baseDelayMs": 5}})["a"].base_delay_ms == 5
    with pytest.raises(ValueError, match="'b'"):
        parse_type_defaults({"b": {"factor": 0}})
