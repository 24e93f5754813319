"""Schemathesis hooks of test_openapi_contract (SCHEMATHESIS_HOOKS): rules no OpenAPI schema can state.

Each hook touches only positive cases (data the document calls valid), and only where validity
depends on the server's state or on two values agreeing; negative cases are left to be refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import schemathesis

from services.api.analytics.windows import DEFAULT_STEPS, DEFAULT_WINDOW, parse_step
from services.api.http.problems import ValidationFailed
from services.api.jobs.views import encode_cursor


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _without_dependencies(job: Any) -> None:
    # `dependsOn` must name jobs the tenant has (or refs of the batch): random ids name none.
    if isinstance(job, dict):
        job.pop("dependsOn", None)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Make the server-state and cross-field rules hold in positive cases."""
    if not _positive(case):
        return case
    route = (case.operation.method.upper(), case.operation.path)
    if route == ("GET", "/api/v1/jobs") and case.query and "cursor" in case.query:
        # A cursor is opaque: only one this API returned is valid (test_list refuses the others).
        case.query = {**case.query, "cursor": encode_cursor(datetime.now(UTC), uuid.uuid4())}
    elif route == ("GET", "/api/v1/metrics/jobs/timeline") and case.query and "step" in case.query:
        # The step must fit the window (not longer, not too many points): test_metrics refuses the others.
        window = case.query.get("window", DEFAULT_WINDOW)
        try:
            parse_step(case.query["step"], window)
        except ValidationFailed:
            case.query = {**case.query, "step": DEFAULT_STEPS[window]}
    elif route == ("POST", "/api/v1/jobs") and isinstance(case.body, dict):
        body = dict(case.body)
        _without_dependencies(body)
        key = (case.headers or {}).get("Idempotency-Key")
        if key is not None and body.get("idempotencyKey") is not None:
            body["idempotencyKey"] = key  # the header and the field must agree
        case.body = body
    elif route == ("POST", "/api/v1/job-batches") and isinstance(case.body, dict):
        jobs = [dict(j) if isinstance(j, dict) else j for j in case.body.get("jobs", [])]
        refs: set[object] = set()
        keys: set[object] = set()
        for job in jobs:
            _without_dependencies(job)
            if not isinstance(job, dict):
                continue
            # Refs and idempotency keys are unique within a batch.
            for name, seen in (("ref", refs), ("idempotencyKey", keys)):
                value = job.get(name)
                if value is not None and value in seen:
                    job[name] = None
                seen.add(value)
        case.body = {**case.body, "jobs": jobs}
    return case
