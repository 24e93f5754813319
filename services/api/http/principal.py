"""Who calls: API keys resolved to principals (briefly cached), and the ONE dependency routes use for it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from services.api.http.problems import Forbidden
from shared.auth.principal import Principal, Scope
from shared.auth.resolve import bearer_token, resolve_principal

# A revoked key keeps working for at most this long; a lookup per request would cost a round trip.
CACHE_TTL_S = 5.0
CACHE_MAX = 10_000


class PrincipalResolver:
    """`resolve(token)` -> Principal; raises shared.auth.resolve.AuthenticationError for a bad key."""

    def __init__(self, pool: asyncpg.Pool, *, auth_required: bool, ttl_s: float = CACHE_TTL_S) -> None:
        self._pool = pool
        self._auth_required = auth_required
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        # One lookup per key at a time: when an entry expires under load, the requests that find it
        # expired wait for that one lookup instead of each taking a pool connection for the same row.
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    async def resolve(self, token: str | None) -> Principal:
        """The caller's principal (the default admin when no key is sent and auth is off)."""
        if token is None:
            return await resolve_principal(self._pool, None, auth_required=self._auth_required)
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        lookup = asyncio.ensure_future(resolve_principal(self._pool, token, auth_required=self._auth_required))
        self._lookups[digest] = lookup
        try:
            principal = await asyncio.shield(lookup)
        finally:
            if lookup.done():
                self._lookups.pop(digest, None)
            else:  # we were cancelled; the lookup goes on for the others, then leaves the table
                lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()  # crude but bounded; real deployments have few keys
        self._cache[digest] = (time.monotonic() + self._ttl_s, principal)
        return principal


async def current_principal(request: Request) -> Principal:
    """Resolve `Authorization: Bearer <key>`; raises AuthenticationError (401) for a bad or missing key.

    Plain header access rather than fastapi.security.HTTPBearer: one dependency less on the hot path
    (the OpenAPI document declares the bearer scheme itself, see openapi.py).
    """
    resolver: PrincipalResolver = request.app.state.principals
    return await resolver.resolve(bearer_token(request.headers.get("authorization")))


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that passes the principal on only if it holds `scope` (403 naming it otherwise).

    It calls current_principal itself rather than depending on it: FastAPI's dependency solving
    costs tens of microseconds per level on every request.
    """

    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.can(scope):
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")
        return principal

    return check


# The scopes of DESIGN §10: reading needs `read`; submitting, cancelling and retrying the tenant's own
# jobs need `submit` (`admin` implies both).
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Submitter = Annotated[Principal, Depends(require(Scope.SUBMIT))]
