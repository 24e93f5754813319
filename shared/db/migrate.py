"""Numbered SQL migrations in `shared/db/migrations`, applied once each under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

_LOCK = "SELECT pg_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"
_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; every replica starting at once must agree on it.
_LOCK_ID = 0x0C0_4E10


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every migration file, in order; refuses gaps and duplicates."""
    found: list[Migration] = []
    for entry in resources.files("shared.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {migration.name}: expected number {expected:04d}")
    return found


async def apply_migrations(dsn: str, *, timeout_s: float = 60.0) -> list[int]:
    """Apply what is missing; returns the versions applied now. Safe to run concurrently."""
    conn = await asyncpg.connect(dsn, timeout=timeout_s, command_timeout=timeout_s)
    try:
        await conn.execute(_LOCK, _LOCK_ID)
        try:
            await conn.execute(_CREATE_LEDGER)
            done = {r["version"] for r in await conn.fetch(_APPLIED)}
            applied: list[int] = []
            for migration in load_migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(_RECORD, migration.version, migration.name)
                log.info("applied migration %s", migration.name)
                applied.append(migration.version)
            return applied
        finally:
            await conn.execute(_UNLOCK, _LOCK_ID)
    finally:
        await conn.close(timeout=5)
