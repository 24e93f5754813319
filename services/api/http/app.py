"""The ASGI app: routes, problem handlers, body limit and metrics middleware, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import FastAPI

from services.api.alerts.schemas import AlertRuleCreate, AlertRulePatch
from services.api.http.dashboard import mount_dashboard
from services.api.http.deps import ApiDeps
from services.api.http.exception_handlers import install_exception_handlers
from services.api.http.middleware import BodyLimitMiddleware, MetricsMiddleware
from services.api.http.openapi import install_openapi
from services.api.http.principal import PrincipalResolver
from services.api.http.submit_lane import SubmitLane
from services.api.jobs.schedules import ScheduleCreate, SchedulePatch
from services.api.jobs.schemas import BatchSubmission, JobSubmission
from services.api.queues.schemas import QueueConfigPatch
from services.api.routes import alerts, batches, dlq, health, jobs, metrics, queues, schedules, workers
from shared.telemetry import fastapi_telemetry

DESCRIPTION = "Submit, inspect, cancel and retry jobs. Errors are RFC 9457 problem details."


def create_app(deps: ApiDeps) -> FastAPI:
    """Build the app around already-open resources (the service, or a test, owns their lifecycle)."""
    app = FastAPI(
        title="Conveyor", version="1", description=DESCRIPTION, docs_url="/docs", redoc_url=None,
        telemetry=fastapi_telemetry(),
    )
    app.state.deps = deps
    app.state.principals = PrincipalResolver(deps.pool, auth_required=deps.settings.auth_required)
    # One module per resource (a new one goes here).
    routers = (jobs.router, batches.router, dlq.router, schedules.router, queues.router, workers.router,
               alerts.router, metrics.router)
    for router in routers:
        app.include_router(router)
    health.install_health(app, deps.pool)
    install_exception_handlers(app, [route for router in routers for route in router.routes])
    install_openapi(app, [JobSubmission, BatchSubmission, ScheduleCreate, SchedulePatch, QueueConfigPatch,
                          AlertRuleCreate, AlertRulePatch])
    # Added last = outermost: metrics also see the 413s the body limit answers; the submit lane
    # is inside both.
    app.add_middleware(SubmitLane, fastapi_app=app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=deps.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    # Mounted after the API routes, so it only sees paths they do not match.
    mount_dashboard(app, deps.settings)
    return app
