"""Backoff delays of RetryPolicy."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from shared.models import RetryPolicy


def test_exponential_without_jitter_doubles_up_to_the_cap() -> None:
    p = RetryPolicy(base_delay_ms=100, max_delay_ms=500, jitter=False)
    assert [p.delay_ms(n) for n in range(1, 6)] == [100, 200, 400, 500, 500]


def test_linear_fixed_and_none() -> None:
    assert [RetryPolicy(strategy="linear", base_delay_ms=10, jitter=False).delay_ms(n) for n in (1, 2, 3)] == [
        10, 20, 30]
    assert RetryPolicy(strategy="fixed", base_delay_ms=70, jitter=False).delay_ms(9) == 70
    assert RetryPolicy(strategy="none").delay_ms(3) == 0


@given(attempt=st.integers(1, 60), base=st.integers(0, 10_000), cap=st.integers(0, 100_000), seed=st.integers())
def test_full_jitter_stays_between_zero_and_the_full_delay(attempt: int, base: int, cap: int, seed: int) -> None:
    # DESIGN §5: `jitter` is full jitter over the computed delay.
    plain = RetryPolicy(base_delay_ms=base, max_delay_ms=cap, jitter=False).delay_ms(attempt)
    jittered = RetryPolicy(base_delay_ms=base, max_delay_ms=cap).delay_ms(attempt, random.Random(seed))
    assert 0 <= jittered <= plain <= cap


def test_full_jitter_spreads_over_the_whole_range() -> None:
    p = RetryPolicy(strategy="fixed", base_delay_ms=10_000)
    delays = [p.delay_ms(1, random.Random(seed)) for seed in range(400)]
    # Equal jitter would never go below half; full jitter covers [0, 10000] evenly.
    assert sum(d < 5000 for d in delays) > 120 and sum(d < 1000 for d in delays) > 10
    assert max(delays) <= 10_000


def test_camel_case_input_is_accepted() -> None:
    p = RetryPolicy.model_validate({"baseDelayMs": 5, "maxDelayMs": 9})
    assert (p.base_delay_ms, p.max_delay_ms) == (5, 9)
