"""Fixtures of the worker tests: worker settings on the shared `service_settings`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.settings import WorkerSettings
from tests.fixtures.resources import SettingsFactory

WorkerSettingsFactory = Callable[..., WorkerSettings]

# Short leases; a queue list refreshed only every 60 s, so tests see the wake-driven refresh and
# not the timer; the request timeout these tests always had (the shared default is 3000).
WORKER_TEST_DEFAULTS: dict[str, Any] = {
    "lease_ms": 3000, "queue_refresh_interval_s": 60.0, "kafka_request_timeout_ms": 5000,
}


@pytest.fixture
def worker_settings(service_settings: SettingsFactory, kafka_topics: dict[str, str]) -> WorkerSettingsFactory:
    """`worker_settings(**overrides)`: a worker of this test (its topics exist), with an id of its own."""

    def make(**overrides: Any) -> WorkerSettings:
        values = {**WORKER_TEST_DEFAULTS, "worker_id": f"w-{uuid.uuid4().hex[:6]}", **overrides}
        return service_settings(WorkerSettings, **values)

    return make
