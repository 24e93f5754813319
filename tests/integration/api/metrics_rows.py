"""Writing analytics aggregate rows directly (as the analytics service would) for the metrics route tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from services.api.store.metrics import BY_ATTEMPT, HISTOGRAMS, SUMS
from shared.analytics.histogram import MAX_ATTEMPT_SLOT, SLOTS, attempt_slot, bucket_of

ARRAYS = (*HISTOGRAMS, *BY_ATTEMPT)
UNITS = {"stats_minute": "minute", "stats_hour": "hour", "stats_day": "day"}


def histogram(values_ms: Iterable[float]) -> list[int]:
    """Counts per bucket (shared.analytics.histogram) of some durations."""
    counts = [0] * SLOTS
    for value in values_ms:
        counts[bucket_of(value)] += 1
    return counts


def by_attempt(attempts: Iterable[int]) -> list[int]:
    """A *_by_attempt array: the count of each attempt number at its 1-based slot."""
    counts = [0] * MAX_ATTEMPT_SLOT
    for n in attempts:
        counts[attempt_slot(n) - 1] += 1
    return counts


def _upsert(table: str) -> str:
    columns = ("tenant", "queue", "job_type", "bucket", *SUMS, *ARRAYS)
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    values = values.replace("$4", f"date_trunc('{UNITS[table]}', $4, 'UTC')", 1)
    updates = [f"{c} = s.{c} + EXCLUDED.{c}" for c in SUMS]
    updates += [f"{c} = conveyor_add_counts(s.{c}, EXCLUDED.{c})" for c in ARRAYS]
    return (f"INSERT INTO {table} AS s ({', '.join(columns)}) VALUES ({values}) "
            f"ON CONFLICT (tenant, queue, job_type, bucket) DO UPDATE SET {', '.join(updates)}")


async def add_stats(pool: asyncpg.Pool, at: datetime, *, tenant: str = "default", queue: str = "a",
                    job_type: str = "t", **figures: Any) -> None:
    """Add figures (SUMS columns, ARRAYS lists) at `at` to its minute, hour and day rows."""
    unknown = set(figures) - set(SUMS) - set(ARRAYS)
    assert not unknown, unknown
    args = [figures.get(c, 0) for c in SUMS] + [figures.get(c, []) for c in ARRAYS]
    for table in UNITS:
        await pool.execute(_upsert(table), tenant, queue, job_type, at, *args)


async def add_worker_minute(pool: asyncpg.Pool, worker_id: str, at: datetime, **figures: int) -> None:
    """A worker_stats_minute row (completed, failed, retried, busy_ms)."""
    await pool.execute(
        "INSERT INTO worker_stats_minute (worker_id, bucket, completed, failed, retried, busy_ms) "
        "VALUES ($1, date_trunc('minute', $2, 'UTC'), $3, $4, $5, $6)",
        worker_id, at, figures.get("completed", 0), figures.get("failed", 0), figures.get("retried", 0),
        figures.get("busy_ms", 0),
    )
