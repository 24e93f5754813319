"""The API's error vocabulary: one ConveyorError subclass per HTTP outcome, rendered as RFC 9457."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.api.http.responses import ProblemResponse
from shared.errors import ConveyorError

TYPE_BASE = "urn:conveyor:problem:"


@dataclass(frozen=True)
class FieldError:
    """One field-level message: `field` is a path such as `priority` or `jobs[3].payload`."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ApiError(ConveyorError):
    """The request could not be served."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors)
        self.headers = headers or {}


class MalformedRequest(ApiError):
    """The body is not valid JSON."""

    status, slug, title = 400, "malformed-request", "Malformed request"


class Unauthenticated(ApiError):
    """Missing or invalid API key."""

    status, slug, title = 401, "unauthenticated", "Authentication required"


class Forbidden(ApiError):
    """The key lacks the scope this route needs."""

    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    """No such resource for this caller."""

    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method."""

    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(ApiError):
    """The resource's state does not allow this."""

    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    """The body or the job payload is over its size limit."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ApiError):
    """Bodies must be JSON."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(ApiError):
    """One or more fields are invalid."""

    status, slug, title = 422, "validation-error", "Validation failed"


class ServiceUnavailable(ApiError):
    """A dependency (Postgres, Redis) did not answer."""

    status, slug, title = 503, "unavailable", "Service unavailable"


def problem_body(
    status: int, slug: str, title: str, detail: str, instance: str | None, errors: Sequence[FieldError] = ()
) -> dict[str, Any]:
    """The JSON document of a problem; `errors` is always present so clients can iterate it."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [e.to_json() for e in errors],
    }
    if instance:
        body["instance"] = instance
    return body


def problem_response(exc: ApiError, instance: str | None) -> ProblemResponse:
    """Render an ApiError."""
    body = problem_body(exc.status, exc.slug, exc.title, exc.detail, instance, exc.errors)
    return ProblemResponse(body, status_code=exc.status, headers=exc.headers or None)
