"""Property tests of the backoff bounds (issue 9): 0 <= delay <= maxDelayMs, caps grow monotonically, none is 0."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from services.worker import outcomes
from shared.models import JobSpec, RetryPolicy
from tests.unit.worker.helpers import make_spec

STRATEGIES = st.sampled_from(["exponential", "linear", "fixed", "none"])
policies = st.builds(
    RetryPolicy,
    strategy=STRATEGIES,
    base_delay_ms=st.integers(0, 86_400_000),
    max_delay_ms=st.integers(0, 7 * 86_400_000),
    factor=st.floats(1.0, 100.0, allow_nan=False),
    jitter=st.booleans(),
)
attempts = st.integers(1, 10_000)


@given(policy=policies, attempt=attempts, seed=st.integers())
def test_every_delay_is_between_zero_and_the_max_delay(policy: RetryPolicy, attempt: int, seed: int) -> None:
    delay = policy.delay_ms(attempt, random.Random(seed))
    assert isinstance(delay, int)
    assert 0 <= delay <= policy.max_delay_ms
    assert delay <= policy.ceiling_ms(attempt)


@given(policy=policies, attempt=attempts)
def test_the_computed_delay_never_shrinks_from_one_attempt_to_the_next(policy: RetryPolicy, attempt: int) -> None:
    assert policy.ceiling_ms(attempt) <= policy.ceiling_ms(attempt + 1) <= policy.max_delay_ms


@given(policy=policies, attempt=attempts)
def test_strategy_shapes(policy: RetryPolicy, attempt: int) -> None:
    ceiling = policy.ceiling_ms(attempt)
    cap, base = policy.max_delay_ms, policy.base_delay_ms
    if policy.strategy == "none":
        assert ceiling == 0
    elif policy.strategy == "fixed":
        assert ceiling == min(base, cap)
    elif policy.strategy == "linear":
        assert ceiling == min(base * attempt, cap)
    else:
        assert ceiling >= min(base, cap)  # at least the base (or the cap), growing from there


@given(policy=policies, attempt=attempts, seed=st.integers())
def test_without_jitter_the_delay_is_the_computed_one(policy: RetryPolicy, attempt: int, seed: int) -> None:
    plain = policy.model_copy(update={"jitter": False})
    assert plain.delay_ms(attempt, random.Random(seed)) == plain.ceiling_ms(attempt)


@given(attempt=attempts, seed=st.integers())
def test_none_retries_at_once(attempt: int, seed: int) -> None:
    assert RetryPolicy(strategy="none", base_delay_ms=5000).delay_ms(attempt, random.Random(seed)) == 0


@given(policy=policies, retry_after_s=st.floats(0, 1e7, allow_nan=False), attempt=st.integers(1, 50))
def test_a_retry_after_is_honoured_but_capped_by_max_delay(
    policy: RetryPolicy, retry_after_s: float, attempt: int
) -> None:
    spec: JobSpec = make_spec("x", attempt=attempt, max_attempts=attempt + 1, retry=policy)
    outcome = outcomes.Outcome(error=outcomes.error_info("http_429", "slow down", True), retry_after_s=retry_after_s)
    decision = outcomes.decide(outcome, spec)
    assert decision.verdict is outcomes.Verdict.RETRY
    assert decision.delay_ms == min(int(retry_after_s * 1000), policy.max_delay_ms)
