"""API keys: random tokens shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from shared.auth.principal import ALL_SCOPES, DEFAULT_TENANT, Principal, Scope

_INSERT = "INSERT INTO api_keys (key_hash, tenant, scopes, name) VALUES ($1, $2, $3, $4)"
_LOOKUP = "SELECT tenant, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"

_PREFIX = "cvk_"
# A key chosen by an operator (`deploy.keys ensure` with CONVEYOR_API_KEY) must be at least this
# long: keys are hashed without stretching, so they must be unguessable by themselves.
MIN_KEY_LENGTH = 32


def hash_key(key: str) -> str:
    """Keys carry 256 random bits, so a plain hash is enough (no stretching needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh plaintext key."""
    return _PREFIX + secrets.token_urlsafe(32)


async def create_api_key(
    conn: asyncpg.Connection | asyncpg.Pool, tenant: str, scopes: frozenset[Scope], name: str
) -> str:
    """Store a new key and return its plaintext (the only time it exists)."""
    key = new_key()
    await register_api_key(conn, key, tenant, scopes, name)
    return key


async def register_api_key(
    conn: asyncpg.Connection | asyncpg.Pool, key: str, tenant: str, scopes: frozenset[Scope], name: str
) -> None:
    """Store the hash of a key chosen elsewhere (an operator's, a test's)."""
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must have at least {MIN_KEY_LENGTH} characters")
    await conn.execute(_INSERT, hash_key(key), tenant, sorted(s.value for s in scopes), name)


async def resolve_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> Principal | None:
    """The principal of a live key, or None."""
    row = await conn.fetchrow(_LOOKUP, hash_key(key))
    if row is None:
        return None
    return Principal(row["tenant"], frozenset(Scope(s) for s in row["scopes"]))


async def ensure_key(
    conn: asyncpg.Connection | asyncpg.Pool, existing: str | None, tenant: str, scopes: frozenset[Scope], name: str
) -> str:
    """`existing` if it is a live key of `tenant` with `scopes`, else a new key with them."""
    if existing:
        principal = await resolve_key(conn, existing)
        if principal == Principal(tenant, scopes):
            return existing
    return await create_api_key(conn, tenant, scopes, name)


async def ensure_dev_key(dsn: str, existing: str | None = None) -> str:
    """Reuse `existing` if it is still a live key with every scope, else create a development admin key."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
    try:
        return await ensure_key(conn, existing, DEFAULT_TENANT, ALL_SCOPES, "dev-admin")
    finally:
        await conn.close(timeout=5)
