"""Helpers for runs of thousands of jobs under failure: bulk submission, rows, and executions counted from `started`."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from tests.fixtures.cluster import Cluster
from tests.fixtures.polling import poll_until

TERMINAL = ("completed", "failed", "cancelled")
BATCH = 1000


async def submit_many(client: httpx.AsyncClient, n: int, **job: Any) -> list[uuid.UUID]:
    """Submit `n` copies of a job through POST /job-batches (a chunk per call); their ids in order."""
    ids: list[uuid.UUID] = []
    while len(ids) < n:
        size = min(BATCH, n - len(ids))
        body = {"jobs": [{"queue": "chaos", "jobType": "noop", **job} for _ in range(size)]}
        r = await client.post("/job-batches", json=body)
        assert r.status_code == 201, r.text
        ids += [uuid.UUID(x) for x in r.json()["jobIds"]]
    return ids


async def rows(cluster: Cluster, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    """The jobs' rows (status, attempts, max_attempts), straight from Postgres."""
    conn = await asyncpg.connect(cluster.database_url, timeout=10)
    try:
        found = await conn.fetch(
            "SELECT id, status, attempts, max_attempts FROM jobs WHERE id = ANY($1::uuid[])", list(ids)
        )
    finally:
        await conn.close()
    return {r["id"]: r for r in found}


async def wait_all_terminal(cluster: Cluster, ids: list[uuid.UUID], timeout_s: float) -> dict[uuid.UUID, Any]:
    """Until every job's row is terminal; returns the rows."""

    async def probe() -> dict[uuid.UUID, Any]:
        return await rows(cluster, ids)

    def done(found: dict[uuid.UUID, Any]) -> bool:
        return len(found) == len(ids) and all(r["status"] in TERMINAL for r in found.values())

    return await poll_until(probe, done, timeout_s=timeout_s, every_s=0.5)


async def history_starts(cluster: Cluster, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The first attempt number of each job's attempt history (jobs with any)."""
    conn = await asyncpg.connect(cluster.database_url, timeout=10)
    try:
        found = await conn.fetch(
            "SELECT job_id, min(attempt) AS first FROM job_attempts WHERE job_id = ANY($1::uuid[]) GROUP BY job_id",
            list(ids),
        )
    finally:
        await conn.close()
    return {r["job_id"]: r["first"] for r in found}


@dataclass
class Executions:
    """Every handler run of a set of jobs, as their `started` events tell (one per worker and start time)."""

    runs: dict[uuid.UUID, set[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(set))
    started_at: dict[uuid.UUID, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    ended_at: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def count(self, job: uuid.UUID) -> int:
        """How many times the job's handler started."""
        return len(self.runs.get(job, ()))

    def attempts(self, job: uuid.UUID) -> set[int]:
        """The attempt numbers that started."""
        return {attempt for attempt, _, _ in self.runs.get(job, ())}

    def duplicates(self) -> int:
        """Runs beyond the first of each job."""
        return sum(len(r) - 1 for r in self.runs.values() if r)

    def same_attempt_runs(self) -> Counter[uuid.UUID]:
        """Jobs whose one attempt number started more than once, and how many extra times."""
        out: Counter[uuid.UUID] = Counter()
        for job, runs in self.runs.items():
            per = Counter(attempt for attempt, _, _ in runs)
            extra = sum(n - 1 for n in per.values())
            if extra:
                out[job] = extra
        return out

    def in_flight_at(self, moment: datetime, slack_s: float = 1.0) -> set[uuid.UUID]:
        """Jobs a worker held around `moment`: started before it (or within `slack_s` after: popped
        before it) and not yet ended at it."""
        out = set()
        for job, starts in self.started_at.items():
            ended = self.ended_at.get(job)
            began = min(starts)
            if (began - moment).total_seconds() < slack_s and (ended is None or ended > moment):
                out.add(job)
        return out


def _stamp(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


async def executions(cluster: Cluster, ids: Iterable[uuid.UUID], timeout_s: float = 30) -> Executions:
    """Read `jobs.started` and the terminal topics from the start until every job has its terminal event."""
    wanted = {str(i) for i in ids}
    topics = ("jobs.started", "jobs.completed", "jobs.failed", "jobs.cancelled")
    consumer = AIOKafkaConsumer(
        *(cluster.topics[t] for t in topics), bootstrap_servers=cluster.kafka_bootstrap,
        group_id=None, auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    out = Executions()
    finished: set[str] = set()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        ends: dict[Any, int] | None = None
        while time.monotonic() < deadline:
            if finished == wanted:
                # Every terminal event is in; the `started` topic is fetched apart from those and may
                # lag behind them: read on to the end offsets of this moment before counting runs.
                if ends is None:
                    ends = await consumer.end_offsets(list(consumer.assignment()))
                positions = [await consumer.position(tp) for tp in ends]
                if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                    break
            for records in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                for record in records:
                    env = orjson.loads(record.value)
                    job_id = env["jobId"]
                    if job_id not in wanted:
                        continue
                    job = uuid.UUID(job_id)
                    data = env["data"]
                    if env["type"] == "started":
                        out.runs[job].add((env["attempt"], str(data.get("workerId")), str(data.get("startedAt"))))
                        out.started_at[job].append(_stamp(data.get("startedAt") or env["occurredAt"]))
                    else:
                        finished.add(job_id)
                        ended = _stamp(env["occurredAt"])
                        out.ended_at[job] = min(ended, out.ended_at.get(job, ended))
    finally:
        await consumer.stop()
    assert finished == wanted, f"{len(wanted - finished)} jobs have no terminal event on Kafka"
    return out
