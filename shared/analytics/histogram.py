"""Fixed log-spaced millisecond buckets (ratio √2), mergeable by adding counts, and percentiles read from them.

Stored as bigint[] in the stats_* tables: element i+1 is the count of bucket i, whose upper
bound is BOUNDS_MS[i] (inclusive); the last element counts values above the last bound (+Inf).
Fixed buckets rather than a sketch library: Postgres can add them element-wise in the upsert
and over any window, and √2 steps bound a percentile's error to about 20 %.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# 1 ms .. 2^22 ms (about 70 minutes), steps of √2, without the duplicates rounding makes.
BOUNDS_MS: tuple[int, ...] = tuple(sorted({round(2 ** (k / 2)) for k in range(45)}))
SLOTS = len(BOUNDS_MS) + 1  # + the +Inf bucket
MAX_ATTEMPT_SLOT = 20  # *_by_attempt arrays: attempt n at index n, later attempts folded into the last


def bucket_of(value_ms: float) -> int:
    """The 0-based bucket of a value (negative values count as 0)."""
    return bisect.bisect_left(BOUNDS_MS, max(0.0, value_ms))


def attempt_slot(attempt: int) -> int:
    """The 1-based array index of an attempt number in a *_by_attempt array."""
    return max(1, min(attempt, MAX_ATTEMPT_SLOT))


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) of a histogram, interpolated inside its bucket; None when empty.

    A value in the +Inf bucket reads as the last bound (the histogram cannot say more).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n <= 0:
            continue
        if seen + n >= rank:
            if i >= len(BOUNDS_MS):
                return float(BOUNDS_MS[-1])
            low = 0.0 if i == 0 else float(BOUNDS_MS[i - 1])
            return low + (BOUNDS_MS[i] - low) * (rank - seen) / n
        seen += n
    return float(BOUNDS_MS[-1])
