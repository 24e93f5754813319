"""The aggregates recomputed in Python from the audit log, and the stats tables read back, comparably."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.analytics.histogram import MAX_ATTEMPT_SLOT, bucket_of

Key = tuple[str, str, str, datetime]
Table = dict[Key, dict[str, Any]]

COUNT_OF = {"submitted": "submitted", "started": "started", "completed": "completed", "failed": "failed",
            "retry": "retried", "cancelled": "cancelled"}
ARRAYS = ("duration_hist", "wait_hist", "completed_by_attempt", "retried_by_attempt", "failed_by_attempt")
SUMS = ("submitted", "started", "completed", "failed", "retried", "cancelled",
        "duration_ms_sum", "duration_count", "wait_ms_sum", "wait_count")
TRUNC = {"stats_minute": "minute", "stats_hour": "hour", "stats_day": "day"}


def trimmed(counts: Iterable[int]) -> tuple[int, ...]:
    """Counts without trailing zeros (stored arrays end at the highest slot ever used)."""
    out = list(counts)
    while out and out[-1] == 0:
        out.pop()
    return tuple(out)


def _truncate(at: datetime, unit: str) -> datetime:
    if unit == "minute":
        return at.replace(second=0, microsecond=0)
    if unit == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def duration(kind: str, data: Mapping[str, Any]) -> int | None:
    """An outcome's duration as the contract defines it: durationMs, else endedAt - startedAt."""
    if kind not in ("completed", "retry", "failed"):
        return None
    if "durationMs" in data:
        return _ms(data["durationMs"])
    if not data.get("startedAt") or not data.get("endedAt"):
        return None
    span = datetime.fromisoformat(data["endedAt"]) - datetime.fromisoformat(data["startedAt"])
    return _ms(span // timedelta(milliseconds=1))


def expected(events: Iterable[Mapping[str, Any]], table: str) -> Table:
    """What `table` must hold for these audit rows (tenant, queue, job_type, type, attempt, occurred_at, envelope)."""
    rows: dict[Key, dict[str, Any]] = defaultdict(
        lambda: {**dict.fromkeys(SUMS, 0), **{a: Counter() for a in ARRAYS}, "errors": Counter()}
    )
    for e in events:
        kind, data = e["type"], e["envelope"]["data"]
        if kind not in COUNT_OF:
            continue  # dispatched, progress: no stats row of their own
        row = rows[(e["tenant"], e["queue"], e["job_type"], _truncate(e["occurred_at"], TRUNC[table]))]
        if kind in COUNT_OF:
            row[COUNT_OF[kind]] += 1
        slot = max(1, min(e["attempt"], MAX_ATTEMPT_SLOT))
        if kind in ("completed", "retry", "failed"):
            row[f"{COUNT_OF[kind]}_by_attempt"][slot] += 1
        if (ms := duration(kind, data)) is not None:
            row["duration_ms_sum"] += ms
            row["duration_count"] += 1
            row["duration_hist"][bucket_of(ms) + 1] += 1
        if kind == "started" and (wait := _ms(data.get("waitMs"))) is not None:
            row["wait_ms_sum"] += wait
            row["wait_count"] += 1
            row["wait_hist"][bucket_of(wait) + 1] += 1
        error = data.get("error")
        if kind in ("retry", "failed") and isinstance(error, dict) and error.get("type"):
            row["errors"][error["type"]] += 1
    out: Table = {}
    for key, row in rows.items():
        for a in ARRAYS:
            counts: Counter[int] = row[a]
            row[a] = trimmed(counts.get(i, 0) for i in range(1, max(counts, default=0) + 1))
        row["errors"] = dict(row["errors"])
        out[key] = row
    return out


async def stored(pool: asyncpg.Pool, table: str) -> Table:
    """A stats_* table as `expected` shapes it."""
    assert table in TRUNC
    out: Table = {}
    for r in await pool.fetch(f"SELECT * FROM {table}"):
        row: dict[str, Any] = {c: r[c] for c in SUMS}
        row.update({a: trimmed(r[a]) for a in ARRAYS})
        row["errors"] = dict(r["errors"])
        out[(r["tenant"], r["queue"], r["job_type"], r["bucket"])] = row
    return out


async def audit_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every audit row, with the columns `expected` reads."""
    query = "SELECT tenant, queue, job_type, type, attempt, occurred_at, envelope FROM job_events"
    return list(await pool.fetch(query))


async def assert_aggregates_match_the_audit_log(pool: asyncpg.Pool) -> None:
    """Every stats_* table holds exactly what the audit log's events add up to (each event once)."""
    events = await audit_rows(pool)
    for table in TRUNC:
        assert await stored(pool, table) == expected(events, table), table
