"""orjson helpers shared by the HTTP, Kafka, Redis and Postgres edges."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; UUIDs and datetimes as text."""
    return orjson.dumps(value, default=str)


def dumps_str(value: Any) -> str:
    """Compact JSON text (asyncpg's jsonb codec wants str)."""
    return orjson.dumps(value, default=str).decode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON text or bytes."""
    return orjson.loads(raw)
