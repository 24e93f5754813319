"""The notifier's settings: the shared NotifierSettings plus what only the notifier reads."""

from __future__ import annotations

from pydantic import Field

from shared.settings import NotifierSettings


class NotifierServiceSettings(NotifierSettings):
    """NotifierSettings + auth and stream tuning (env: AUTH_REQUIRED, SSE_KEEPALIVE_S, ...)."""

    # Secure by default (DESIGN §10): a handshake without a key is refused unless this is off.
    # TODO(issue 8): delete this field once CommonSettings carries `auth_required` (default True,
    # off only with a loopback host); the notifier then inherits it.
    auth_required: bool = True
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # How long closing a socket may wait for the peer (a stuck client cannot take the close frame).
    ws_close_timeout_s: float = Field(default=10.0, gt=0)
    max_subscriptions: int = Field(default=1000, ge=1)
