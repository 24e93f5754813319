"""Resolve API keys to principals, with a short cache so the submit path skips a query per request."""

from __future__ import annotations

import hashlib
import time

import asyncpg

from shared.auth.principal import Principal
from shared.auth.resolve import resolve_principal

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

    async def resolve(self, token: str | None) -> Principal:
        """The caller's principal (the default admin when no key is sent and auth is optional)."""
        if token is None:
            return await resolve_principal(self._pool, None, auth_required=self._auth_required)
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await resolve_principal(self._pool, token, auth_required=self._auth_required)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()  # crude but bounded; real deployments have few keys
        self._cache[digest] = (now + self._ttl_s, principal)
        return principal
