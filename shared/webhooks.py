"""Webhook signing (DESIGN §5) and the per-tenant secret it is keyed by.

`Conveyor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed by the
UTF-8 bytes of the tenant's secret (the scheme Stripe uses; receivers verify it with `hmac`).
The notifier signs; `make dev` and compose init create the default tenant's secret up front.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import asyncpg

EVENT_HEADER = "Conveyor-Event"
DELIVERY_HEADER = "Conveyor-Delivery"
SIGNATURE_HEADER = "Conveyor-Signature"
SECRET_ENV = "CONVEYOR_WEBHOOK_SECRET"

_SECRET_PREFIX = "whsec_"
# Insert-if-missing, then read: a concurrent creator's row is not in this statement's snapshot, so
# `ensure_secret` reads again when the insert lost the race.
_ENSURE = """
WITH created AS (
    INSERT INTO tenant_webhook_secrets (tenant, secret) VALUES ($1, $2)
    ON CONFLICT (tenant) DO NOTHING
    RETURNING secret
)
SELECT secret FROM created
UNION ALL
SELECT secret FROM tenant_webhook_secrets WHERE tenant = $1
LIMIT 1
"""
_READ = "SELECT secret FROM tenant_webhook_secrets WHERE tenant = $1"


def new_secret() -> str:
    """A fresh secret: 256 random bits."""
    return _SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Conveyor-Signature` value of `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Whether `header` is a valid signature of `body` (a receiver also bounds the age of `t`)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        expected = signature(secret, int(fields["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


async def ensure_secret(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> str:
    """The tenant's webhook secret, created on first need."""
    found: str | None = await conn.fetchval(_ENSURE, tenant, new_secret())
    if found is None:  # another writer created it concurrently: it is committed now
        found = await conn.fetchval(_READ, tenant)
    if found is None:
        raise RuntimeError(f"no webhook secret for tenant {tenant!r}")
    return found


async def ensure_secret_at(dsn: str, tenant: str) -> str:
    """`ensure_secret` over a connection of its own (deploy tools)."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
    try:
        return await ensure_secret(conn, tenant)
    finally:
        await conn.close(timeout=5)
