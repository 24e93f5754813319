"""End to end with the scheduling controls in play (`endToEndScheduled`), and what the issue-9 scenarios share."""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import Any

import aiohttp

from bench import scenarios

SCHEDULED_QUEUE = "bench-sched"
FAIRNESS_KEYS = [f"tenant-{i:02d}" for i in range(20)]
RATE_KEYS = [f"account-{i:02d}" for i in range(20)]
PRIORITIES: list[int | str] = [*range(11), "high", "normal", "low"]
# Per rateLimitKey: ~1,500 jobs/s over 20 keys is ~75/s each; 100,000 per second never binds.
UNBINDING_KEY_LIMIT = {"limit": 100_000, "periodMs": 1000}
FAN_IN_EVERY = 10  # the last job of every 10 depends on the 3 before it
FAN_IN_WIDTH = 3


class Unavailable(RuntimeError):
    """The cluster lacks a feature the scenario needs (a route or field not built yet)."""


def unavailable(exc: scenarios.Rejected) -> Unavailable | scenarios.Rejected:
    """A 404/405 (no such route) or 422 (a field the build does not know) means "not built yet"."""
    return Unavailable(str(exc)) if exc.status in (404, 405, 422) else exc


async def configure_queue(client: aiohttp.ClientSession, queue: str, config: dict[str, Any]) -> Any:
    """PUT /queues/{name} with a partial config (DESIGN §5); a build without the route is Unavailable."""
    status, body = await scenarios.call(client, "PUT", f"/api/v1/queues/{queue}", config)
    if status not in (200, 201):
        raise unavailable(scenarios.Rejected(f"PUT /queues/{queue}", status, body))
    return body


async def guarded(name: str, scenario: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run one scenario; a missing feature or a failure is reported in its figure, not raised, so the
    rest of the bench still runs."""
    try:
        return await scenario
    except Unavailable as exc:
        print(f"  {name}: not available on this build: {exc}", flush=True)
        return {"available": False, "reason": str(exc)}
    except Exception as exc:  # any failure of one scenario must not lose the others' figures
        print(f"  {name}: failed: {exc!r}", flush=True)
        return {"error": repr(exc)}


def scheduled_jobs(n: int, index: int) -> list[dict[str, Any]]:
    """One batch of no-op jobs with mixed priorities (numbers and words), a fairnessKey among 20, a
    rateLimitKey among 20, and small fan-ins: every 10th job depends on the 3 before it (by ref)."""
    rng = random.Random(index)
    jobs: list[dict[str, Any]] = []
    for i in range(n):
        job: dict[str, Any] = {
            "queue": SCHEDULED_QUEUE, "jobType": "noop", "payload": {}, "ref": f"j{i}",
            "priority": rng.choice(PRIORITIES),
            "fairnessKey": rng.choice(FAIRNESS_KEYS), "rateLimitKey": rng.choice(RATE_KEYS),
        }
        if i % FAN_IN_EVERY == FAN_IN_EVERY - 1 and i >= FAN_IN_WIDTH:
            job["dependsOn"] = [f"j{d}" for d in range(i - FAN_IN_WIDTH, i)]
        jobs.append(job)
    return jobs


async def prepare_scheduled(api_url: str, key: str) -> None:
    """Set the queue's per-key rate limit (high enough not to bind) and check that the build takes the
    scheduling fields: one small batch, run to completion, before anything is timed."""
    async with scenarios.http_client(api_url, key) as client:
        await configure_queue(client, SCHEDULED_QUEUE, {"keyRateLimit": UNBINDING_KEY_LIMIT})
        try:
            await scenarios.end_to_end(api_url, key, total=50, batch=50, timeout_s=60, jobs_for=scheduled_jobs)
        except scenarios.Rejected as exc:
            raise unavailable(exc) from exc

