"""orjson-rendered JSON responses (FastAPI's ORJSONResponse is deprecated; this is the same idea)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


def _default(value: Any) -> Any:
    # orjson handles UUIDs and datetimes itself; anything else (Decimal, sets) becomes text.
    return str(value)


class JsonResponse(Response):
    """`application/json`, rendered by orjson (UUIDs and datetimes as RFC 3339 text)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


class ProblemResponse(JsonResponse):
    """RFC 9457 problem details."""

    media_type = PROBLEM_JSON
