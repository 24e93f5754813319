"""The spec a worker reads from Redis stays readable across a rolling deploy."""

from __future__ import annotations

import uuid

import orjson

from shared.models import JobSpec, RetryPolicy


def test_a_field_from_a_newer_scheduler_is_ignored_not_refused() -> None:
    spec = JobSpec(job_id=uuid.uuid4(), queue="q", job_type="noop", payload={"a": 1}, retry=RetryPolicy())
    wire = orjson.loads(spec.model_dump_json(by_alias=True))
    read = JobSpec.model_validate_json(orjson.dumps({**wire, "someFutureField": {"x": 1}}))
    assert read == spec
    # Still camelCase on the wire, as every model at an edge.
    assert {"jobId", "jobType", "maxAttempts"} <= wire.keys()
