"""`waitingReason` (DESIGN §5 "Why is it waiting") on GET /jobs/{id} and in GET /jobs items."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from deploy.local.servers import free_port
from services.api.jobs.waiting import waiting_reason
from shared.dispatch.waits import ConcurrencyHold, RateHold, WaitState
from shared.models import JobSpec
from tests.integration.api.conftest import Api


async def reason_of(api: Api, job_id: str) -> Any:
    response = await api.client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()["waitingReason"]


async def set_status(api: Api, job_id: str, status: str, **columns: Any) -> None:
    sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(columns))
    await api.pool.execute(
        f"UPDATE jobs SET status = $2{', ' + sets if sets else ''} WHERE id = $1::uuid", job_id, status,
        *columns.values(),
    )


async def test_a_fresh_job_is_pending(api: Api) -> None:
    reason = await reason_of(api, await api.submit())
    assert reason["code"] == "pending" and reason["message"]


async def test_dependencies_name_the_unfinished_ones(api: Api) -> None:
    first, second = await api.submit(), await api.submit()
    done = await api.submit()
    await set_status(api, done, "completed")
    child = await api.submit(dependsOn=[first, second, done])
    await set_status(api, child, "blocked")
    reason = await reason_of(api, child)
    assert reason["code"] == "dependencies"
    assert sorted(reason["waitingOn"]) == sorted([first, second])
    assert "2 unfinished dependencies" in reason["message"]


async def test_scheduled_says_until_when(api: Api) -> None:
    job_id = await api.submit(scheduledFor="2031-05-01T12:00:00Z")
    reason = await reason_of(api, job_id)  # still pending: the scheduler has not seen it
    assert reason["code"] == "scheduled"
    assert datetime.fromisoformat(reason["until"]) == datetime(2031, 5, 1, 12, tzinfo=UTC)
    await set_status(api, job_id, "scheduled")
    assert (await reason_of(api, job_id))["code"] == "scheduled"


async def test_backoff_says_until_and_the_next_attempt(api: Api) -> None:
    job_id = await api.submit()
    until = datetime.now(UTC) + timedelta(seconds=30)
    await set_status(api, job_id, "retrying", attempts=2, next_run_at=until)
    reason = await reason_of(api, job_id)
    assert reason["code"] == "backoff" and reason["attempt"] == 3
    assert abs(datetime.fromisoformat(reason["until"]) - until) < timedelta(milliseconds=1)
    assert "attempt 3" in reason["message"]


async def test_queued_says_how_many_are_ahead(api: Api) -> None:
    ids = [await api.submit() for _ in range(3)]
    specs = [JobSpec(job_id=uuid.UUID(i), queue="q", job_type="noop", payload={}) for i in ids]
    assert await api.dispatcher.push([(spec, 0) for spec in specs]) == [True] * 3
    for job_id in ids:
        await set_status(api, job_id, "queued")
    reasons = [await reason_of(api, job_id) for job_id in ids]
    assert [r["code"] for r in reasons] == ["queued"] * 3
    assert [r["ahead"] for r in reasons] == [0, 1, 2]
    assert "2 jobs are ahead" in reasons[2]["message"]
    # The list carries the same reasons (one Redis round trip for the page).
    items = (await api.client.get("/api/v1/jobs")).json()["items"]
    assert {i["jobId"]: i["waitingReason"]["ahead"] for i in items} == dict(zip(ids, [0, 1, 2], strict=True))


async def test_paused_comes_first(api: Api) -> None:
    assert (await api.client.post("/api/v1/queues/q/pause")).status_code == 200
    pending = await api.submit()
    delayed = await api.submit(delayMs=60_000)
    blocked = await api.submit(dependsOn=[pending])
    for job_id in (pending, delayed, blocked):
        reason = await reason_of(api, job_id)
        assert reason["code"] == "paused" and "paused" in reason["message"]
    await api.client.post("/api/v1/queues/q/resume")
    assert (await reason_of(api, pending))["code"] == "pending"
    assert (await reason_of(api, delayed))["code"] == "scheduled"


async def test_running_and_terminal_jobs_have_none(api: Api) -> None:
    for status in ("running", "completed", "failed", "cancelled"):
        job_id = await api.submit()
        await set_status(api, job_id, status)
        assert await reason_of(api, job_id) is None
    failed = (await api.client.get("/api/v1/dlq")).json()["items"]
    assert len(failed) == 1 and failed[0]["waitingReason"] is None


async def test_without_redis_the_job_is_answered_from_postgres(api_factory: Any) -> None:
    api: Api = await api_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    pending = await api.submit()
    delayed = await api.submit(delayMs=60_000)
    assert (await reason_of(api, pending))["code"] == "pending"
    assert (await reason_of(api, delayed))["code"] == "scheduled"
    listed = (await api.client.get("/api/v1/jobs")).json()["items"]
    assert {i["waitingReason"]["code"] for i in listed} == {"pending", "scheduled"}


# ---- the limits (what Redis reports once the dispatch core fills them in): the wording, without servers ----

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"status": "queued", "queue": "q", "depends_on": [], "scheduled_for": None, "attempts": 0,
            "next_run_at": None}
    return {**base, **overrides}


def test_concurrency_limited_names_the_key_and_the_slots() -> None:
    state = WaitState(ready=True, ahead=0, concurrency=ConcurrencyHold("acct-1", 2, 2))
    reason = waiting_reason(row(), None, state, NOW)
    assert reason is not None
    assert (reason["code"], reason["key"], reason["running"], reason["limit"]) == ("concurrency_limited", "acct-1",
                                                                                  2, 2)
    assert "acct-1" in reason["message"] and "2 of 2" in reason["message"]
    queue_wide = waiting_reason(row(), None, WaitState(ready=True, concurrency=ConcurrencyHold(None, 5, 5)), NOW)
    assert queue_wide is not None and queue_wide["key"] is None and "queue 'q'" in queue_wide["message"]


def test_rate_limited_says_until_when() -> None:
    until_ms = int(NOW.timestamp() * 1000) + 1500
    reason = waiting_reason(row(), None, WaitState(ready=True, rate=RateHold("acct-1", until_ms)), NOW)
    assert reason is not None and reason["code"] == "rate_limited" and reason["key"] == "acct-1"
    assert datetime.fromisoformat(reason["until"]) == NOW + timedelta(milliseconds=1500)


def test_the_order_of_reasons() -> None:
    both = WaitState(paused=True, ready=True, concurrency=ConcurrencyHold(None, 1, 1), rate=RateHold(None, 0))
    assert waiting_reason(row(), None, both, NOW)["code"] == "paused"  # type: ignore[index]
    limited = WaitState(ready=True, concurrency=ConcurrencyHold(None, 1, 1), rate=RateHold(None, 0))
    assert waiting_reason(row(), None, limited, NOW)["code"] == "concurrency_limited"  # type: ignore[index]
    dependent = row(status="blocked", depends_on=[uuid.uuid4()])
    assert waiting_reason(dependent, [dependent["depends_on"][0]], limited, NOW)["code"] == "dependencies"  # type: ignore[index]
    assert waiting_reason(row(status="running"), None, both, NOW) is None
