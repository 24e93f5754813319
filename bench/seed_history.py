"""Write a realistic history of jobs into Postgres, with the aggregates analytics would have kept.

    python -m bench.seed_history --jobs 1000000 --database-url postgresql://...

Jobs and their attempts go into `jobs` and `job_attempts` (all finished: completed, failed after
retries, or cancelled, so no service picks them up), spread over the last `--days`; the per-minute,
hour and day rows of `stats_*` and `worker_stats_minute` are computed from the same attempts in Python
(shared.analytics.histogram) and added to whatever the tables hold. Everything is written with COPY
(asyncpg copy_records_to_table). The audit log (`job_events`) is not written: the metrics routes never
read it. See bench/history.py for the mix.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from bench.history import (
    ATTEMPT_COLUMNS,
    COMPLETED_BY,
    COUNT_NAMES,
    DURATION_HIST,
    FAILED_BY,
    JOB_COLUMNS,
    RETRIED_BY,
    TENANT,
    WAIT_HIST,
    WIDTH,
    Aggregates,
    generate,
    when,
)
from shared.analytics.histogram import SLOTS

STATS_COLUMNS = ("tenant", "queue", "job_type", "bucket", *COUNT_NAMES, "duration_ms_sum", "duration_count",
                 "duration_hist", "wait_ms_sum", "wait_count", "wait_hist", "completed_by_attempt",
                 "retried_by_attempt", "failed_by_attempt", "errors")
ARRAY_COLUMNS = ("duration_hist", "wait_hist", "completed_by_attempt", "retried_by_attempt", "failed_by_attempt")
WORKER_COLUMNS = ("worker_id", "bucket", "completed", "failed", "retried", "busy_ms")
COPY_TIMEOUT_S = 600.0


def _merge_sql(table: str, staging: str, key: str, columns: Iterable[str], arrays: Iterable[str] = (),
               jsonb: Iterable[str] = ()) -> str:
    """Add the staging rows to `table` (rows already there, e.g. from a running cluster, are summed)."""
    cols = list(columns)
    sums = [c for c in cols if c not in key and c not in arrays and c not in jsonb and c not in ("bucket",)]
    updates = [f"{c} = t.{c} + EXCLUDED.{c}" for c in sums]
    updates += [f"{c} = conveyor_add_counts(t.{c}, EXCLUDED.{c})" for c in arrays]
    updates += [f"{c} = conveyor_add_jsonb_counts(t.{c}, EXCLUDED.{c})" for c in jsonb]
    return (f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {staging} "
            f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}")


def _rolled_up(minutes: dict[tuple[str, str, int], list[int]], errors: dict[tuple[str, str, int], dict[str, int]],
               per: int) -> tuple[dict[tuple[str, str, int], list[int]], dict[tuple[str, str, int], dict[str, int]]]:
    """Minute accumulators summed per `per` minutes (60: hours, 1440: days)."""
    out: dict[tuple[str, str, int], list[int]] = {}
    out_errors: dict[tuple[str, str, int], dict[str, int]] = {}
    for (queue, job_type, minute), row in minutes.items():
        key = (queue, job_type, minute // per)
        acc = out.get(key)
        if acc is None:
            out[key] = list(row)
        else:
            out[key] = [a + b for a, b in zip(acc, row, strict=True)]
    for (queue, job_type, minute), counts in errors.items():
        into = out_errors.setdefault((queue, job_type, minute // per), {})
        for name, n in counts.items():
            into[name] = into.get(name, 0) + n
    return out, out_errors


def _stats_records(rows: dict[tuple[str, str, int], list[int]], errors: dict[tuple[str, str, int], dict[str, int]],
                   seconds: int) -> list[tuple[Any, ...]]:
    out = []
    for key, r in rows.items():
        queue, job_type, unit = key
        out.append((TENANT, queue, job_type, when(unit * seconds), *r[:6], r[6], r[7],
                    r[DURATION_HIST:DURATION_HIST + SLOTS], r[8], r[9], r[WAIT_HIST:WAIT_HIST + SLOTS],
                    r[COMPLETED_BY:RETRIED_BY], r[RETRIED_BY:FAILED_BY], r[FAILED_BY:WIDTH],
                    orjson.dumps(errors.get(key, {})).decode()))
    return out


async def _copy_merged(conn: asyncpg.Connection, table: str, key: str, columns: tuple[str, ...],
                       records: list[tuple[Any, ...]], arrays: tuple[str, ...] = (),
                       jsonb: tuple[str, ...] = ()) -> None:
    staging = f"seed_{table}"
    await conn.execute(f"CREATE TEMP TABLE {staging} (LIKE {table}) ON COMMIT DROP")
    await conn.copy_records_to_table(staging, records=records, columns=columns, timeout=COPY_TIMEOUT_S)
    await conn.execute(_merge_sql(table, staging, key, columns, arrays, jsonb), timeout=COPY_TIMEOUT_S)


async def seed(database_url: str, jobs: int, days: float = 3.0, seed_value: int = 1) -> dict[str, Any]:
    """Write `jobs` finished jobs over the last `days`, with their aggregates; figures of the run."""
    began = time.perf_counter()
    rng = random.Random(seed_value)
    agg = Aggregates()
    conn = await asyncpg.connect(database_url)
    attempts = 0
    try:
        for job_rows, attempt_rows in generate(jobs, days, rng, agg, end=time.time()):
            async with conn.transaction():
                await conn.copy_records_to_table("jobs", records=job_rows, columns=JOB_COLUMNS,
                                                 timeout=COPY_TIMEOUT_S)
                await conn.copy_records_to_table("job_attempts", records=attempt_rows, columns=ATTEMPT_COLUMNS,
                                                 timeout=COPY_TIMEOUT_S)
            attempts += len(attempt_rows)
        jobs_s = time.perf_counter() - began
        hours, hour_errors = _rolled_up(agg.minutes, agg.errors, 60)
        days_rows, day_errors = _rolled_up(agg.minutes, agg.errors, 1440)
        key = "tenant, queue, job_type, bucket"
        async with conn.transaction():
            for table, rows, errors, seconds in (("stats_minute", agg.minutes, agg.errors, 60),
                                                 ("stats_hour", hours, hour_errors, 3600),
                                                 ("stats_day", days_rows, day_errors, 86400)):
                await _copy_merged(conn, table, key, STATS_COLUMNS, _stats_records(rows, errors, seconds),
                                   ARRAY_COLUMNS, ("errors",))
            workers = [(w, when(m * 60), *r) for (w, m), r in agg.workers.items()]
            await _copy_merged(conn, "worker_stats_minute", "worker_id, bucket", WORKER_COLUMNS, workers)
        await conn.execute("ANALYZE jobs, job_attempts, stats_minute, stats_hour, stats_day, worker_stats_minute",
                           timeout=COPY_TIMEOUT_S)
    finally:
        await conn.close()
    return {"jobs": jobs, "attempts": attempts, "statsMinuteRows": len(agg.minutes),
            "jobsSeconds": round(jobs_s, 1), "seconds": round(time.perf_counter() - began, 1)}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, seed, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed_history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=3.0, help="how far back the history reaches (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same mix)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="Postgres DSN (default: $DATABASE_URL)")
    args = parser.parse_args(argv)
    if not args.database_url:
        raise SystemExit("no database: pass --database-url or set DATABASE_URL")
    print(orjson.dumps(asyncio.run(seed(args.database_url, args.jobs, args.days, args.seed))).decode())


if __name__ == "__main__":
    main()
