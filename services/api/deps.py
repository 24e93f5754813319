"""What routes depend on: the service's resources and the caller (the ONE way routes learn who calls)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from services.api.auth import PrincipalResolver
from services.api.problems import Forbidden
from shared.auth.principal import Principal, Scope
from shared.auth.resolve import bearer_token
from shared.dispatch.protocol import Dispatcher
from shared.outbox import OutboxRelay, Outgoing
from shared.settings import ApiSettings


@dataclass
class ApiDeps:
    """Everything the routes use; built by the service (or a test) and handed to create_app."""

    settings: ApiSettings
    pool: asyncpg.Pool
    dispatcher: Dispatcher | None = None
    relay: OutboxRelay | None = None
    principals: PrincipalResolver = field(init=False)

    def __post_init__(self) -> None:
        self.principals = PrincipalResolver(self.pool, auth_required=self.settings.auth_required)

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

async def current_principal(request: Request) -> Principal:
    """Resolve `Authorization: Bearer <key>`; raises AuthenticationError (401) for a bad or missing key.

    Plain header access rather than fastapi.security.HTTPBearer: one dependency less on the hot path
    (the OpenAPI document declares the bearer scheme itself, see openapi.py).
    """
    return await app_deps(request).principals.resolve(bearer_token(request.headers.get("authorization")))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that passes the principal on only if it holds `scope` (admin holds them all).

    It calls current_principal itself rather than depending on it: FastAPI's dependency solving
    costs tens of microseconds per level on every request.
    """

    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.can(scope):
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Submitter = Annotated[Principal, Depends(require(Scope.SUBMIT))]
