"""Turn pydantic errors into field-level problems, and JSON bodies into request models."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from starlette.requests import Request

from services.api.http.problems import FieldError, MalformedRequest, NotFound, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)

# FastAPI prefixes a location with where the value came from; clients only care about the name.
_SOURCES = {"body", "query", "path", "header", "cookie"}


def path_id(raw: str, what: str) -> uuid.UUID:
    """A resource id from the path; anything that is not a UUID names no `what` (404, like another tenant's id)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no {what} {raw}", errors=[FieldError("id", "not a UUID")]) from None


def field_path(loc: Sequence[int | str], *, camel: bool = True) -> str:
    """`("jobs", 3, "max_attempts")` -> `jobs[3].maxAttempts`; an empty location is the body itself."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = to_camel(part) if camel else part
            out += f".{name}" if out else name
    return out or "body"


def field_errors(errors: Iterable[Any], *, strip_source: bool = False) -> list[FieldError]:
    """Field errors from pydantic's `errors()` (or FastAPI's, whose locations start with the source)."""
    out = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if strip_source and loc and loc[0] in _SOURCES:
            loc = loc[1:]
        # An unknown key is reported as the client spelled it; known fields are named in camelCase.
        camel = err.get("type") != "extra_forbidden"
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        out.append(FieldError(field_path(loc, camel=camel), message))
    return out


def is_malformed_json(errors: Iterable[Any]) -> bool:
    """Whether pydantic (or FastAPI) failed to parse the JSON text itself."""
    return any(err.get("type") in ("json_invalid", "json_type") for err in errors)


def raise_for(exc: ValidationError) -> NoReturn:
    """Re-raise a pydantic error as the problem it is: 400 for broken JSON, 422 otherwise."""
    errors = exc.errors(include_url=False, include_input=False)
    if is_malformed_json(errors):
        raise MalformedRequest(f"the body is not valid JSON: {errors[0]['msg']}") from exc
    raise ValidationFailed("the request has invalid fields", errors=field_errors(errors)) from exc


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # curl -d without -H; the body must still parse as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"bodies must be application/json, not {media or 'empty'}")


async def parse_body(request: Request, model: type[M]) -> M:
    """Read the (size-limited) body and validate it in one pass (pydantic parses JSON in Rust)."""
    _check_media_type(request)
    raw = await request.body()
    if not raw.strip():
        raise MalformedRequest("the body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise_for(exc)
