"""A whole run through a real cluster: audit completeness across SIGKILLs of analytics, and aggregates
equal to what the jobs and job_attempts tables say.

Every event the run put on Kafka (read back from the topics) has exactly one audit row, though
analytics was SIGKILLed twice mid-stream and replayed what it had not committed; each event is
counted once in every aggregate; and the figures match the scheduler's own tables.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from shared.analytics.histogram import bucket_of
from shared.db.pool import create_pool
from shared.events import JOB_TOPICS
from tests.chaos.support import submit_many, wait_all_terminal
from tests.e2e.support import api, new_queue
from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until
from tests.integration.analytics.oracle import assert_aggregates_match_the_audit_log, trimmed

pytestmark = pytest.mark.slow

QUICK = {"retry": {"strategy": "none"}}
# (job type, payload, job fields, how many): completions, retries then success, permanent
# failures, and retries until attempts run out.
MIX: list[tuple[str, dict[str, Any], dict[str, Any], int]] = [
    ("noop", {}, {}, 800),
    ("fail", {"mode": "transient", "failTimes": 2}, {"maxAttempts": 5, **QUICK}, 500),
    ("fail", {"mode": "permanent"}, {}, 300),
    ("fail", {"mode": "transient"}, {"maxAttempts": 2, **QUICK}, 400),
]
JOBS = sum(n for *_, n in MIX)


async def audit_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM job_events"))


async def kill_analytics_mid_stream(cluster: Cluster, pool: asyncpg.Pool) -> int:
    """SIGKILL analytics while it is recording: once early in the run, once while it catches up after that."""
    kills = 0
    await poll_until(lambda: audit_count(pool), lambda n: n >= 1000, timeout_s=90, every_s=0.05)
    await cluster.supervisor.kill("analytics", signal.SIGKILL)
    kills += 1
    await cluster.supervisor.wait_ready("analytics", timeout_s=60)
    after_restart = await audit_count(pool)
    await poll_until(lambda: audit_count(pool), lambda n: n > after_restart, timeout_s=60, every_s=0.02)
    await cluster.supervisor.kill("analytics", signal.SIGKILL)
    kills += 1
    await cluster.supervisor.wait_ready("analytics", timeout_s=60)
    return kills


async def kafka_event_ids(cluster: Cluster, timeout_s: float = 60) -> Counter[uuid.UUID]:
    """Every event id on the run's job topics (with how many records carry it), read to the end offsets."""
    consumer = AIOKafkaConsumer(
        *(cluster.topics[t] for t in JOB_TOPICS), bootstrap_servers=cluster.kafka_bootstrap,
        group_id=None, auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    ids: Counter[uuid.UUID] = Counter()
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, "could not read the topics to their end"
            for records in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                ids.update(uuid.UUID(orjson.loads(r.value)["eventId"]) for r in records)
    finally:
        await consumer.stop()
    return ids


async def stats_of(pool: asyncpg.Pool, queue: str) -> asyncpg.Record:
    """The queue's whole-run figures, summed over its day rows as the metrics routes sum them."""
    return await pool.fetchrow(
        "SELECT sum(submitted) AS submitted, sum(started) AS started, sum(completed) AS completed,"
        " sum(failed) AS failed, sum(retried) AS retried, sum(duration_ms_sum) AS duration_ms_sum,"
        " sum(duration_count) AS duration_count, sum(wait_count) AS wait_count,"
        " conveyor_sum_counts(duration_hist) AS duration_hist,"
        " conveyor_sum_counts(completed_by_attempt) AS completed_by_attempt,"
        " conveyor_sum_counts(retried_by_attempt) AS retried_by_attempt,"
        " conveyor_sum_counts(failed_by_attempt) AS failed_by_attempt,"
        " conveyor_sum_jsonb_counts(errors) AS errors"
        " FROM stats_day WHERE queue = $1", queue)


def by_slot(attempts: Counter[int]) -> tuple[int, ...]:
    return trimmed(attempts.get(i, 0) for i in range(1, max(attempts, default=0) + 1))


@pytest.mark.timeout(300)
@pytest.mark.cluster(services=("scheduler", "worker", "analytics", "api"))
async def test_every_event_is_audited_once_through_kills_and_aggregates_match_the_jobs_tables(
    cluster: Cluster,
) -> None:
    queue = new_queue()
    pool = await create_pool(cluster.database_url, min_size=1, max_size=2)
    try:
        async with api(cluster) as client:
            ids = []
            for job_type, payload, fields, n in MIX:
                ids += await submit_many(client, n, queue=queue, jobType=job_type, payload=payload, **fields)
        kills = await kill_analytics_mid_stream(cluster, pool)
        final = await wait_all_terminal(cluster, ids, timeout_s=180)
        assert Counter(r["status"] for r in final.values()) == Counter(completed=1300, failed=700)

        emitted = await kafka_event_ids(cluster)
        await poll_until(lambda: audit_count(pool), lambda n: n >= len(emitted), timeout_s=90, every_s=0.2)
        audited = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM job_events")}
        async with httpx.AsyncClient(base_url=cluster.url("analytics")) as http:
            exposed = (await http.get("/metrics", timeout=5)).text
        replayed = sum(float(line.split()[-1]) for line in exposed.splitlines()
                       if line.startswith("conveyor_analytics_duplicates_skipped_total"))
        lag = [line for line in exposed.splitlines() if line.startswith("conveyor_analytics_lag_seconds ")]
        print(f"{kills} kills; {len(emitted)} events on Kafka ({sum(emitted.values()) - len(emitted)} repeated "
              f"records); {len(audited)} audit rows; {replayed:.0f} redelivered events skipped since the last "
              f"restart; {lag}")
        assert audited == set(emitted)  # exactly one row per emitted event (event_id is the key)
        await assert_aggregates_match_the_audit_log(pool)  # ... and each counted once

        attempts = await pool.fetch(
            "SELECT a.attempt, a.status, a.started_at, a.ended_at, a.error ->> 'type' AS error_type,"
            " j.status AS job_status, j.attempts AS job_attempts"
            " FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.queue = $1", queue)
        terminal_failure = [a for a in attempts if a["job_status"] == "failed" and a["attempt"] == a["job_attempts"]]
        retries = [a for a in attempts if a["status"] == "failed" and a not in terminal_failure]
        durations = [(a["ended_at"] - a["started_at"]) // timedelta(milliseconds=1) for a in attempts]
        hist = Counter(bucket_of(ms) for ms in durations)
        stats = await stats_of(pool, queue)
        assert (stats["submitted"], stats["started"], stats["wait_count"]) == (JOBS, len(attempts), len(attempts))
        assert stats["completed"] == sum(1 for a in attempts if a["status"] == "completed") == 1300
        assert stats["failed"] == len(terminal_failure) == 700
        assert stats["retried"] == len(retries) == 500 * 2 + 400
        assert trimmed(stats["completed_by_attempt"]) == by_slot(
            Counter(a["attempt"] for a in attempts if a["status"] == "completed"))
        assert trimmed(stats["retried_by_attempt"]) == by_slot(Counter(a["attempt"] for a in retries)) == (900, 500)
        assert trimmed(stats["failed_by_attempt"]) == by_slot(Counter(a["attempt"] for a in terminal_failure))
        assert stats["errors"] == Counter(a["error_type"] for a in attempts if a["status"] == "failed")
        assert (stats["duration_count"], stats["duration_ms_sum"]) == (len(attempts), sum(durations))
        assert trimmed(stats["duration_hist"]) == by_slot(Counter({b + 1: n for b, n in hist.items()}))
    finally:
        await pool.close()
