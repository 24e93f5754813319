"""Chaos: 5,000 jobs while the worker is SIGKILLed again and again (the supervisor restarts it).

Every job must end terminal, none lost; a job runs more than once only if a killed worker held
it, so the duplicates stay within the worker's concurrency times the kills.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest

from shared.events import utcnow
from tests.chaos.support import executions, history_starts, rows, submit_many, wait_all_terminal
from tests.e2e.support import api, new_queue
from tests.fixtures.cluster import Cluster

pytestmark = pytest.mark.slow

JOBS = 5000
CONCURRENCY = 50
KILL_EVERY_S = 3.0
MAX_KILLS = 8


async def _kill_repeatedly(cluster: Cluster, ids: list[uuid.UUID]) -> list[datetime]:
    """SIGKILL the worker every few seconds while jobs remain (at most MAX_KILLS); the kill times."""
    kills: list[datetime] = []
    while len(kills) < MAX_KILLS:
        await cluster.supervisor.wait_ready("worker", timeout_s=30)
        await asyncio.sleep(KILL_EVERY_S)
        found = await rows(cluster, ids)
        if sum(1 for r in found.values() if r["status"] in ("completed", "failed", "cancelled")) >= len(ids) * 0.9:
            break  # the tail is left to finish undisturbed
        kills.append(utcnow())
        await cluster.supervisor.kill("worker", signal.SIGKILL)
    return kills


@pytest.mark.timeout(240)
@pytest.mark.cluster(env={"WORKER_CONCURRENCY": str(CONCURRENCY)})
async def test_repeated_worker_sigkills_lose_nothing_and_duplicate_only_in_flight_jobs(cluster: Cluster) -> None:
    began = time.monotonic()
    async with api(cluster) as client:
        ids = await submit_many(
            client, JOBS, queue=new_queue(), jobType="sleep", payload={"ms": 200}, maxAttempts=20,
        )
    kills = await _kill_repeatedly(cluster, ids)
    final = await wait_all_terminal(cluster, ids, timeout_s=120)
    elapsed = time.monotonic() - began
    runs = await executions(cluster, ids, timeout_s=60)
    held_at_kills = set().union(*(runs.in_flight_at(k, slack_s=0) for k in kills)) if kills else set()
    firsts = await history_starts(cluster, ids)
    again = {job for job in ids if runs.count(job) > 1}
    same_attempt = runs.same_attempt_runs()
    statuses = Counter(r["status"] for r in final.values())
    print(
        f"chaos: {len(kills)} kills in {elapsed:.0f}s; statuses {dict(statuses)}; held at kills {len(held_at_kills)}; "
        f"duplicate runs {runs.duplicates()} over {len(again)} jobs ({sum(same_attempt.values())} at one attempt); "
        f"attempts > 1: {sum(1 for r in final.values() if r['attempts'] > 1)}"
    )
    assert len(kills) >= 3, "the run ended before the worker was killed repeatedly"
    assert len(final) == JOBS  # none lost
    assert statuses == Counter({"completed": JOBS})
    assert again <= held_at_kills  # only jobs a killed worker held ran more than once
    assert runs.duplicates() <= CONCURRENCY * len(kills)
    for job in ids:
        row = final[job]
        # An attempt counts only if it started: attempts shown are the attempts that ran, from 1.
        assert row["attempts"] == len(runs.attempts(job)), (job, row, runs.runs.get(job))
        assert firsts.get(job) == 1
