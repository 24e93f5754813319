"""/api/v1/stats and /api/v1/metrics/*: dashboard figures from the analytics aggregates (DESIGN §5).

They read the analytics service's per-minute, hour and day rows (never the jobs table: the cost follows
queues x job types x buckets, not the number of jobs) and, for current state, the unfinished jobs.
`read` suffices and a tenant sees its own jobs' figures; a `cluster` key sees every tenant's. Worker
figures are cluster-wide, so /metrics/workers needs `cluster`, as the worker registry does (§10).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from services.api.analytics import figures
from services.api.analytics.capacity import DEFAULT_TARGET_WAIT_S
from services.api.analytics.schemas import (
    DurationHistogram,
    JobTypeMetricsList,
    QueueMetricsList,
    Stats,
    Timeline,
    WorkerMetricsList,
)
from services.api.analytics.windows import (
    DEFAULT_STEPS,
    DEFAULT_WINDOW,
    STEP_PATTERN,
    Window,
    parse_step,
    resolution_of,
    span_of,
    step_starts,
)
from services.api.analytics.workers import worker_items
from services.api.http.deps import Deps
from services.api.http.openapi import problems
from services.api.http.principal import Reader, require
from services.api.http.responses import JsonResponse
from services.api.jobs.field_types import NAME_PATTERN
from services.api.store import metrics as store
from services.api.store.connections import connection
from services.api.store.workers import list_workers
from shared.auth.principal import Principal, Scope

router = APIRouter(prefix="/api/v1", tags=["metrics"])

ClusterReader = Annotated[Principal, Depends(require(Scope.CLUSTER))]

WINDOW_TEXT = ("The window ends now and starts `window` ago, rounded up to a whole minute (a whole hour for `7d`); "
               "rates divide by exactly that span.")
WindowParam = Annotated[Window, Query(description=f"`15m`, `1h`, `24h` or `7d`. {WINDOW_TEXT}")]
QueueParam = Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this queue")]
JobTypeParam = Annotated[str | None, Query(alias="jobType", pattern=NAME_PATTERN, description="Only this job type")]
BAD_WINDOW = {422: "A parameter is invalid (`window` not one of 15m, 1h, 24h, 7d ...); `errors` names it"}
SCOPED = "Figures of the caller's tenant's jobs; a key with `cluster` sees every tenant's."


@router.get(
    "/stats", response_model=Stats, operation_id="getStats", summary="Jobs by status and throughput",
    description=f"`totals`: jobs by status, the finished ones (completed, failed, cancelled) since the beginning, "
                "the others now. `queues`, `throughputPerMin` (completed per minute) and `errorRate` (failed "
                f"for good among the jobs that finished, null when none did) cover the window. {SCOPED}",
    responses=problems(401, 403, 422, 503, meanings=BAD_WINDOW),
)
async def get_stats(deps: Deps, principal: Reader, window: WindowParam = DEFAULT_WINDOW) -> Response:
    """Totals by status and the window's per-queue figures."""
    tenant, span = principal.read_tenant, span_of(window)
    async with connection(deps.pool) as conn:
        rows = await store.window_figures(conn, tenant, span)
        live = await store.live(conn, tenant)
        all_time = await store.all_time(conn, tenant)
    return JsonResponse(figures.stats_body(rows, live, all_time, span))


QUEUES_TEXT = f"""Per queue with events in the window or unfinished jobs now, by name. {SCOPED}

- `counts`: events of the window (outcomes, unlike the current statuses of `GET /queues`): `submitted` jobs,
  `started` attempts, `completed` jobs, `retried` attempts, `failed` jobs (for good), `cancelled` jobs.
- `successRate`: completed among the jobs that finished (completed or failed), 0-1; null when none did.
- `durationMs`, `waitMs`: percentiles of attempt durations and of waits (due → started), from histograms.
- `backlog`: jobs pending, queued or retrying now; `oldestWaitingAgeMs`: the longest a runnable job waits now.
- `throughputPerMin`: completed jobs per minute over the window.
- `workersNeeded`: concurrency slots (summed over workers) that keep up with the window's arrivals
  (submitted + retried per second) at its mean attempt duration and clear the backlog within `targetWaitS`
  (Little's law: ceil((arrivals/s + backlog / targetWaitS) x mean duration s)); null without a finished attempt.
- `drainTimeS`: backlog / (starts/s - arrivals/s) at the window's rates; 0 without a backlog, null when it
  would never drain. Rates are the window's: a short window gives a more current hint."""


@router.get(
    "/metrics/queues", response_model=QueueMetricsList, operation_id="getQueueMetrics",
    summary="Per-queue outcomes, latencies, backlog and capacity hints", description=QUEUES_TEXT,
    responses=problems(401, 403, 422, 503, meanings=BAD_WINDOW),
)
async def get_queue_metrics(
    deps: Deps, principal: Reader, window: WindowParam = DEFAULT_WINDOW,
    target_wait_s: Annotated[float, Query(
        alias="targetWaitS", gt=0, le=86400,
        description=f"The wait `workersNeeded` aims the backlog at, seconds (default {DEFAULT_TARGET_WAIT_S:g})",
    )] = DEFAULT_TARGET_WAIT_S,
) -> Response:
    """The window's figures per queue, with backlog and capacity hints."""
    tenant, span = principal.read_tenant, span_of(window)
    async with connection(deps.pool) as conn:
        rows = await store.window_figures(conn, tenant, span)
        live = await store.live(conn, tenant)
    return JsonResponse({"items": figures.queue_items(rows, live, span, target_wait_s)})


@router.get(
    "/metrics/job-types", response_model=JobTypeMetricsList, operation_id="getJobTypeMetrics",
    summary="The slowest job types, with success rate by attempt number",
    description="Per queue and job type with events in the window, slowest first (by p95 duration; those "
                "without a finished attempt last), at most `limit`. `successRateByAttempt`: for each attempt "
                "number with finished attempts, the share that completed (a retry or a final failure is not; "
                f"attempt 20 also holds every later one). {SCOPED}",
    responses=problems(401, 403, 422, 503, meanings=BAD_WINDOW),
)
async def get_job_type_metrics(
    deps: Deps, principal: Reader, window: WindowParam = DEFAULT_WINDOW, queue: QueueParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """The window's figures per queue and job type, slowest first."""
    span = span_of(window)
    async with connection(deps.pool) as conn:
        rows = await store.window_figures(conn, principal.read_tenant, span, queue)
    return JsonResponse({"items": figures.job_type_items(rows, limit)})


@router.get(
    "/metrics/job-duration-histogram", response_model=DurationHistogram, operation_id="getDurationHistogram",
    summary="Attempt durations as a histogram",
    description="Finished attempts (completed, retried or failed) of the window by duration: every bucket, `le` "
                "in ms ascending (√2 apart, 1 ms to about 70 min), the last `le: null` (+Inf); each `count` is "
                f"the bucket's own, not cumulative. {SCOPED}",
    responses=problems(401, 403, 422, 503, meanings=BAD_WINDOW),
)
async def get_duration_histogram(
    deps: Deps, principal: Reader, queue: QueueParam = None, job_type: JobTypeParam = None,
    window: WindowParam = DEFAULT_WINDOW,
) -> Response:
    """The summed duration histogram of the window."""
    span = span_of(window)
    async with connection(deps.pool) as conn:
        rows = await store.window_figures(conn, principal.read_tenant, span, queue, job_type)
    return JsonResponse({"buckets": figures.histogram_buckets(rows)})


@router.get(
    "/metrics/jobs/timeline", response_model=Timeline, operation_id="getJobTimeline",
    summary="Submitted, completed, failed and retried per step",
    description="One item per step, oldest first, the last holding now (so it is partial); steps without "
                "events are there with zeros. `step`: a number and `m`, `h` or `d` that divides a day (or is "
                "whole days), at most 1,440 points per window, whole hours over `7d`; default "
                + ", ".join(f"{s} over {w}" for w, s in DEFAULT_STEPS.items()) + f". Steps start at multiples "
                f"of the step since 1970-01-01 UTC. {SCOPED}",
    responses=problems(401, 403, 422, 503, meanings={
        422: "`window` or `step` is invalid (`step` too fine for the window, or not dividing a day); "
             "`errors` names it",
    }),
)
async def get_timeline(
    deps: Deps, principal: Reader, queue: QueueParam = None, window: WindowParam = DEFAULT_WINDOW,
    step: Annotated[str | None, Query(pattern=STEP_PATTERN, description="e.g. `1m`, `15m`, `1h`, `1d`")] = None,
) -> Response:
    """Counts per step over the window."""
    size = parse_step(step, window)
    starts = step_starts(window, size)
    async with connection(deps.pool) as conn:
        found = await store.timeline(conn, principal.read_tenant, queue, resolution_of(size), size,
                                     starts[0], starts[-1] + size)
    items = []
    for at in starts:
        row = found.get(at)
        items.append({"at": at, **{k: int(row[k]) if row is not None else 0
                                   for k in ("submitted", "completed", "failed", "retried")}})
    return JsonResponse({"items": items})


@router.get(
    "/metrics/workers", response_model=WorkerMetricsList, operation_id="getWorkerMetrics",
    summary="What each worker finished and how busy it was",
    description="The workers of `GET /workers`, plus those that finished attempts in the window and have left "
                "the registry (`status: gone`, `host` and `concurrency` null), by `workerId`. `completed`, "
                "`failed`, `retried`: attempts it finished in the window; `busyMs`: time its attempts ran; "
                "`utilisation`: busyMs over its slot time in the window (concurrency x the time since the "
                "window's start or its own, whichever is later), 0-1, null when its concurrency is unknown. "
                "Cluster-wide: needs `cluster`, as the worker registry does.",
    responses=problems(401, 403, 422, 503, meanings={
        **BAD_WINDOW, 403: "This API key lacks the `cluster` scope (workers are a cluster resource)",
        503: "Postgres or Redis (the registry) did not answer",
    }),
)
async def get_worker_metrics(deps: Deps, principal: ClusterReader, window: WindowParam = DEFAULT_WINDOW) -> Response:
    """Registry workers with their window's figures."""
    span = span_of(window)
    registry = await list_workers(deps.dispatcher)
    async with connection(deps.pool) as conn:
        rows = await store.worker_figures(conn, span.start)
    return JsonResponse({"items": worker_items(registry, rows, span)})
