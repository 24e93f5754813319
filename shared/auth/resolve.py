"""Turn the credentials of a request or handshake into a principal (the one place that does)."""

from __future__ import annotations

import asyncpg

from shared.auth.keys import resolve_key
from shared.auth.principal import DEFAULT_ADMIN, Principal
from shared.errors import ConveyorError


class AuthenticationError(ConveyorError):
    """Missing or invalid API key."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <api key>'")
    return token.strip()


async def resolve_principal(pool: asyncpg.Pool, token: str | None, *, auth_required: bool) -> Principal:
    """A valid key's principal. Without a key: AuthenticationError when auth is required (the
    default), else the default tenant with every scope, `cluster` included.

    Auth is off only on a loopback bind (`CommonSettings` refuses anything else), so the
    anonymous admin is whoever can reach that machine's loopback: a developer, a test.
    A key that is sent is always checked, auth off or not.
    """
    if token is None:
        if auth_required:
            raise AuthenticationError("an API key is required: send 'Authorization: Bearer <api key>'")
        return DEFAULT_ADMIN
    principal = await resolve_key(pool, token)
    if principal is None:
        raise AuthenticationError("unknown or revoked API key")
    return principal
