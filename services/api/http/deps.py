"""What routes depend on: the service's resources, built by the service (or a test) and handed to create_app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from services.api.queues.rules import QueueRulesCache
from shared.dispatch.protocol import Dispatcher
from shared.outbox import OutboxRelay, Outgoing
from shared.settings import ApiSettings


@dataclass
class ApiDeps:
    """Everything the routes use."""

    settings: ApiSettings
    pool: asyncpg.Pool
    dispatcher: Dispatcher | None = None
    relay: OutboxRelay | None = None
    # Each replica's cache of the submission-time queue rules (maxLength, maxAttempts).
    queue_rules: QueueRulesCache = field(init=False)

    def __post_init__(self) -> None:
        self.queue_rules = QueueRulesCache(self.pool)

    def publish(self, outgoing: Outgoing) -> None:
        """Hand outbox rows just committed to the relay (tests without one sweep them instead)."""
        if self.relay is not None:
            self.relay.hand_off(outgoing)


def app_deps(request: Request) -> ApiDeps:
    """The app's ApiDeps (a plain call: hot routes skip a dependency solve per request)."""
    deps: ApiDeps = request.app.state.deps
    return deps


async def get_deps(request: Request) -> ApiDeps:
    """The app's ApiDeps, as a dependency."""
    return app_deps(request)


Deps = Annotated[ApiDeps, Depends(get_deps)]
