"""The notifier's settings: the shared NotifierSettings plus what only the notifier reads."""

from __future__ import annotations

from pydantic import Field

from shared.settings import NotifierSettings


class NotifierServiceSettings(NotifierSettings):
    """NotifierSettings + stream tuning (env: SSE_KEEPALIVE_S, ...); `auth_required` is the shared one."""

    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # How long closing a socket may wait for the peer (a stuck client cannot take the close frame).
    ws_close_timeout_s: float = Field(default=10.0, gt=0)
    max_subscriptions: int = Field(default=1000, ge=1)
