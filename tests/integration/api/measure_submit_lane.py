"""What the submit lane saves (docs/adr/0004-submit-lane.md). Not part of the suite (no `test_` file name):

    PYTHONPATH=$PWD .venv/bin/python -m pytest -p no:cacheprovider -s tests/integration/api/measure_submit_lane.py

N sequential `POST /api/v1/jobs` through raw ASGI calls (no client, no server) on the real test
Postgres, with the lane and without it (the same app, the lane's middleware removed), rounds
interleaved; prints the api process's CPU time and the wall time per request. CPU time on a busy
machine is noisy: compare medians of many rounds, or count instructions under valgrind (see the ADR).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

import orjson
import pytest

from tests.integration.api.conftest import Api

N = int(os.environ.get("LANE_N", "2000"))
ROUNDS = int(os.environ.get("LANE_ROUNDS", "7"))
# LANE_ONLY=1: only the app with the lane (instruction counts of the submit path itself, under valgrind).
LANE_ONLY = os.environ.get("LANE_ONLY") == "1"
BODY = orjson.dumps({"queue": "bench", "jobType": "noop", "payload": {"n": 1}})


def without_lane(api: Api) -> Any:
    """The same app through FastAPI's router: the lane's middleware taken out before the stack is built."""
    app = api.app
    app.user_middleware = [m for m in app.user_middleware if getattr(m.cls, "__name__", "") != "SubmitLane"]
    app.middleware_stack = None
    return app


def _one_body() -> Any:
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    return receive


async def post_jobs(app: Any, n: int, key: str) -> tuple[float, float]:
    """`n` submissions; returns (CPU µs, wall µs) per request."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode()),
               (b"authorization", f"Bearer {key}".encode()), (b"host", b"api.test")]
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        receive = _one_body()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/v1/jobs", "raw_path": b"/api/v1/jobs", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000), "server": ("api.test", 80)}
        await app(scope, receive, send)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert set(statuses) == {201}
    return cpu / n * 1e6, wall / n * 1e6


@pytest.mark.timeout(1800)
async def test_measure_the_submit_lane(api_factory: Any) -> None:
    lane: Api = await api_factory()
    plain: Api = await api_factory()
    apps = {"lane": lane.app} if LANE_ONLY else {"lane": lane.app, "router": without_lane(plain)}
    for app in apps.values():
        await post_jobs(app, 200, lane.key)  # warm up
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
    for _ in range(ROUNDS):
        for name, app in apps.items():
            runs[name].append(await post_jobs(app, N, lane.key))
    cpu = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    for name, rs in runs.items():
        print(f"\n{name}: CPU {cpu[name]:.0f} µs/request, wall {statistics.median(r[1] for r in rs):.0f} µs/request"
              f" (medians of {ROUNDS} x {N})")
    if not LANE_ONLY:
        print(f"the lane saves {(cpu['router'] - cpu['lane']) / cpu['router'] * 100:.1f}% of the api's CPU "
              "per submission")
