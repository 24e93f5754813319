"""Who opens a stream: the API key of the handshake (header or `?token=`), resolved once per connection."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from fastapi.responses import JSONResponse

from services.notifier import metrics
from shared.auth.principal import Principal, Scope
from shared.auth.resolve import AuthenticationError, bearer_token, resolve_principal
from shared.errors import ConveyorError


class StreamDenied(ConveyorError):
    """The stream cannot be opened for this caller."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail

    def response(self) -> JSONResponse:
        """RFC 9457 problem details, as the API answers."""
        body = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, media_type="application/problem+json", headers=headers)


def handshake_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `?token=<key>` (browsers cannot set WS headers)."""
    token = bearer_token(headers.get("authorization"))
    if token is None:
        raw = query.get("token")
        token = raw.strip() if raw and raw.strip() else None
    return token


async def authenticate(
    pool: asyncpg.Pool, headers: Mapping[str, str], query: Mapping[str, str], *, auth_required: bool
) -> Principal:
    """The caller's principal, who must be allowed to read; raises StreamDenied otherwise."""
    try:
        principal = await resolve_principal(pool, handshake_token(headers, query), auth_required=auth_required)
    except AuthenticationError as exc:
        metrics.AUTH_REJECTED.labels("unauthenticated").inc()
        raise StreamDenied(401, "Unauthorized", str(exc)) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        metrics.AUTH_REJECTED.labels("unavailable").inc()
        raise StreamDenied(503, "Service Unavailable", f"cannot check the API key now: {type(exc).__name__}") from None
    if not principal.can(Scope.READ):
        metrics.AUTH_REJECTED.labels("forbidden").inc()
        raise StreamDenied(403, "Forbidden", "this API key may not read events (needs the 'read' scope)")
    return principal
